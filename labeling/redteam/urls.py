"""Red-teaming: attacks marked in the editor, their corrections, and the admins' overview."""

from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from labeling.redteam import views

urlpatterns = [
    path("messages/<id:message_id>/attack/", views.attack_create, name="attack-create"),
    path("attacks/<id:attack_id>/correct/", views.attack_correct, name="attack-correct"),
    path("attacks/<id:attack_id>/withdraw/", views.attack_withdraw, name="attack-withdraw"),
    path("redteam/", views.redteam_overview, name="redteam"),
    path("redteam/runs/", views.attack_runs, name="attack-runs"),
    path("redteam/runs/new/", views.attack_run_start, name="attack-run-start"),
    path("redteam/runs/<id:run_id>/", views.attack_run_detail, name="attack-run"),
    path(
        "redteam/runs/<id:run_id>/retry-failed/",
        views.attack_run_retry_failed,
        name="attack-run-retry-failed",
    ),
]
