from django.urls import path

from ranking.quality import views

urlpatterns = [
    path("rank/quality/", views.quality, name="quality"),
]
