"""The jobs API's ``kind``, in the path and in the job's state: documented as the registered
kinds, and any other name in the path a JSON 404."""

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
    assert response.json()["detail"] == "No kind of job named 'nope'."


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
