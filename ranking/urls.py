from django.urls import path

from ranking import export_views, quality_views, views

app_name = "ranking"

urlpatterns = [
    path("rank/", views.rank, name="rank"),
    path("rank/<int:assignment_id>/submit/", views.submit, name="submit"),
    path("rank/<int:assignment_id>/skip/", views.skip, name="skip"),
    path("exports/", export_views.export_list, name="exports"),
    path("exports/preview/", export_views.export_preview, name="export-preview"),
    path("exports/start/", export_views.export_start, name="export-start"),
    path("exports/status/", export_views.export_status, name="export-status"),
    path("exports/<int:export_id>/download/", export_views.export_download, name="export-download"),
    path("rank/quality/", quality_views.quality, name="quality"),
]
