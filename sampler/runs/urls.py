from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.runs import views

urlpatterns = [
    path("training/", views.training, name="training"),
    path("training/runs/", views.training_runs, name="training-runs"),
    path("training/runs/start/", views.training_run_start, name="training-run-start"),
    path("training/runs/<id:run_id>/", views.training_run_detail, name="training-run"),
    path(
        "training/runs/<id:run_id>/cancel/", views.training_run_cancel, name="training-run-cancel"
    ),
]
