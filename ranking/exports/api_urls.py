from django.urls import path

from ranking.exports import apis

urlpatterns = [
    path("exports/stream/", apis.ExportStreamApi.as_view(), name="api-export-stream"),
    path("exports/features/", apis.ExportFeaturesApi.as_view(), name="api-export-features"),
]
