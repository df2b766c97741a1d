from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from ranking.quality import views

urlpatterns = [
    path("rank/quality/", views.quality, name="quality"),
    path("rank/quality/tasks/<id:task_id>/", views.task, name="quality-task"),
]
