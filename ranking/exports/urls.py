from django.urls import path

from ranking.exports import views

urlpatterns = [
    path("exports/", views.export_list, name="exports"),
    path("exports/preview/", views.export_preview, name="export-preview"),
    path("exports/start/", views.export_start, name="export-start"),
    path("exports/status/", views.export_status, name="export-status"),
    path("exports/<int:export_id>/download/", views.export_download, name="export-download"),
    path("exports/<int:export_id>/features/", views.export_features, name="export-features"),
]
