from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from ranking.exports import views

urlpatterns = [
    path("exports/", views.export_list, name="exports"),
    path("exports/preview/", views.export_preview, name="export-preview"),
    path("exports/start/", views.export_start, name="export-start"),
    path("exports/status/", views.export_status, name="export-status"),
    path("exports/<id:export_id>/download/", views.export_download, name="export-download"),
    path("exports/<id:export_id>/features/", views.export_features, name="export-features"),
]
