"""The jobs API's ``kind`` in the path: documented as the registered kinds, and any other
name a JSON 404."""

import pytest

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
    assert response.json()["detail"] == "No kind of job named 'nope'."
