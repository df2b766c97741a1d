from django.urls import path

from sampler import model_views, training_views, views

app_name = "sampler"

urlpatterns = [
    path("generate/", views.generate, name="generate"),
    path("generation/jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("training/", training_views.training, name="training"),
    path("training/runs/", training_views.training_runs, name="training-runs"),
    path("training/runs/start/", training_views.training_run_start, name="training-run-start"),
    path("training/runs/<int:run_id>/", training_views.training_run_detail, name="training-run"),
    path(
        "training/runs/<int:run_id>/cancel/",
        training_views.training_run_cancel,
        name="training-run-cancel",
    ),
    path(
        "models/<int:version_id>/promote/",
        training_views.version_promote,
        name="version-promote",
    ),
    path("models/", model_views.models, name="models"),
    path("models/comparisons/", model_views.comparisons, name="comparisons"),
    path("models/comparisons/start/", model_views.comparison_start, name="comparison-start"),
    path("models/ppo/start/", model_views.ppo_run_start, name="ppo-run-start"),
]
