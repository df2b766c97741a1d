from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.registry import views

urlpatterns = [
    path("models/", views.models, name="models"),
    path("models/<id:version_id>/promote/", views.version_promote, name="version-promote"),
    path("models/comparisons/", views.comparisons, name="comparisons"),
    path("models/comparisons/start/", views.comparison_start, name="comparison-start"),
    path("models/ppo/start/", views.ppo_run_start, name="ppo-run-start"),
]
