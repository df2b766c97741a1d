"""The app's JSON API (under /api/): every feature's API URLs."""

from django.urls import include, path

urlpatterns = [
    path("", include("labeling.conversations.api_urls")),
]
