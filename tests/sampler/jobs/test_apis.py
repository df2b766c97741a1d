"""The jobs API's ``kind``, in the path and in the job's state: documented as the registered
kinds, and any other name in the path a JSON 404."""

from datetime import timedelta

import pytest
from django.utils import timezone

from sampler.jobs.kinds import job_kinds

pytestmark = pytest.mark.django_db

JOB_PATHS = (
    "/api/jobs/{kind}/{job_id}/",
    "/api/jobs/{kind}/{job_id}/retry/",
    "/api/jobs/{kind}/{job_id}/cancel/",
)


def test_the_schema_lists_the_registered_job_kinds_as_the_kind_parameters_enum(admin_client_):
    schema = admin_client_.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    ).json()
    registered = sorted(kind.name for kind in job_kinds())
    assert {"generation", "ranking_preparation", "training", "export"} <= set(registered)
    for path in JOB_PATHS:
        for method, operation in schema["paths"][path].items():
            (kind,) = [p for p in operation["parameters"] if p["name"] == "kind"]
            assert kind["in"] == "path" and kind["required"] is True, (path, method)
            assert kind["schema"] == {"type": "string", "enum": registered}, (path, method)


def test_the_schema_lists_the_registered_job_kinds_as_the_job_states_kind(admin_client_):
    # The state's kind was a plain string, though it is always a registered kind's name.
    schema = admin_client_.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    ).json()
    registered = sorted(kind.name for kind in job_kinds())
    components = schema["components"]["schemas"]
    referenced = set()
    for path in JOB_PATHS:
        for method, operation in schema["paths"][path].items():
            for code, response in operation["responses"].items():
                ref = response.get("content", {}).get("application/json", {}).get("schema", {})
                if ref.get("$ref", "").endswith("/JobState"):
                    referenced.add((path, method, code))
    assert ("/api/jobs/{kind}/{job_id}/", "get", "200") in referenced
    kind = components["JobState"]["properties"]["kind"]
    if "$ref" in kind:
        kind = components[kind["$ref"].rsplit("/", 1)[1]]
    assert kind.get("type") == "string" and kind.get("enum") == registered


@pytest.mark.parametrize(
    "method, path",
    [
        ("get", "/api/jobs/nope/1/"),
        ("post", "/api/jobs/nope/1/retry/"),
        ("post", "/api/jobs/nope/1/cancel/"),
    ],
)
def test_a_kind_that_is_not_registered_is_a_json_404(admin_client_, method, path):
    response = getattr(admin_client_, method)(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    # The kinds are listed, as retry_job lists them.
    assert response.json()["detail"] == (
        "No kind of job named 'nope'. Kinds: attack_run, comparison, export, generation, "
        "ranking_preparation, training."
    )


def test_the_schema_says_what_a_503_for_an_unreachable_queue_holds(admin_client_):
    """A job stored but not queued answers ``config.api.BrokerUnavailableResponse``: detail,
    retry_after and the job. The schema said the body was the job's state itself."""
    schema = admin_client_.get(
        "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    ).json()
    components = schema["components"]["schemas"]
    operations = [
        ("/api/jobs/{kind}/{job_id}/retry/", "post", "JobState"),
        ("/api/generation-jobs/", "post", "JobOutput"),
        ("/api/generation-jobs/{job_id}/retry/", "post", "JobOutput"),
    ]
    for path, method, job in operations:
        response = schema["paths"][path][method]["responses"]["503"]
        ref = response["content"]["application/json"]["schema"]["$ref"]
        body = components[ref.rsplit("/", 1)[1]]
        assert set(body["properties"]) == {"detail", "retry_after", "job"}, path
        assert body["properties"]["job"]["$ref"].endswith(f"/{job}"), path
        assert sorted(body["required"]) == ["detail", "job", "retry_after"], path


def _failed_rows(policy, admin_user) -> dict[str, object]:
    """A failed row of each kind that keeps a progress, and of generation, as a failed attempt
    leaves them (started, finished, an error, a heartbeat and a worker)."""
    from labeling.redteam.models import AttackRun
    from ranking.exports.models import DatasetExport
    from sampler.generation.models import GenerationJob
    from sampler.runs.models import TrainingRun

    attempt = {
        "status": "failed",
        "attempts": 3,
        "started_at": timezone.now() - timedelta(hours=2),
        "heartbeat_at": timezone.now() - timedelta(hours=1),
        "finished_at": timezone.now() - timedelta(hours=1),
        "error": "CUDA out of memory.",
        "worker": "gpu-1",
    }
    return {
        "training": TrainingRun.objects.create(
            kind="reward", output_name="rm", config={}, dataset={}, progress=0.4, **attempt
        ),
        "export": DatasetExport.objects.create(
            format="pairs", created_by=admin_user, progress=0.4, **attempt
        ),
        "attack_run": AttackRun.objects.create(
            model_version=policy, requested_by=admin_user, seed=1, progress=0.4, **attempt
        ),
        "generation": GenerationJob.objects.create(
            model_version=policy, n=1, seed=1, requested_by=admin_user, **attempt
        ),
    }


def test_a_retry_clears_what_the_failed_attempt_left_for_every_kind(
    admin_client_, admin_user, policy, broker
):
    for kind, row in _failed_rows(policy, admin_user).items():
        response = admin_client_.post(f"/api/jobs/{kind}/{row.pk}/retry/")
        assert response.status_code == 202, (kind, response.content)
        row.refresh_from_db()
        assert row.status == "queued" and row.attempts == 0, kind
        left = {
            name: getattr(row, name)
            for name in ("started_at", "heartbeat_at", "finished_at", "error", "worker")
        }
        assert left == {
            "started_at": None,
            "heartbeat_at": None,
            "finished_at": None,
            "error": "",
            "worker": "",
        }, kind
        assert getattr(row, "progress", 0.0) == 0.0, kind
        state = response.json()
        assert state["started_at"] is None and state["finished_at"] is None, kind


@pytest.mark.parametrize(
    "path, detail",
    [
        ("/api/jobs/generation/99999/", "No generation job with that id."),
        ("/api/generation-jobs/99999/", "No generation job with that id."),
        ("/api/jobs/ranking_preparation/99999/", "No ranking preparation job with that id."),
        ("/api/jobs/attack_run/99999/retry/", "No attack run job with that id."),
    ],
)
def test_a_missing_job_is_one_sentence_under_either_path(admin_client_, path, detail):
    """The same missing row is said the same way by the jobs API and its kind's own API."""
    method = admin_client_.post if path.endswith("/retry/") else admin_client_.get
    response = method(path)
    assert response.status_code == 404 and response.json() == {"detail": detail}
