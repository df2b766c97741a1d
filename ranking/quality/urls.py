from django.urls import path

from ranking.quality import views

urlpatterns = [
    path("rank/quality/", views.quality, name="quality"),
    path("rank/quality/tasks/<int:task_id>/", views.task, name="quality-task"),
]
