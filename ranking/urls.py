from django.urls import path

from ranking import quality_views, views

app_name = "ranking"

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("rank/<int:assignment_id>/submit/", views.submit, name="submit"),
    path("rank/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("exports/", views.export_list, name="exports"),
    path("rank/quality/", quality_views.quality, name="quality"),
]
