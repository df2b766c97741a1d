"""Inputs a hostile client found that once gave a 500, a non-JSON answer or a silent change:
each is now a clear 4xx (JSON) that changes nothing."""

import json

import pytest

from config.renderers import JSONRenderer
from labeling.conversations.models import Conversation, Draft
from ranking.models import Assignment, Ranking
from ranking.projects.models import DEFAULT_PROJECT_SLUG
from ranking.projects.selectors import project_default
from ranking.projects.services import project_create
from ranking.rank.services import task_claim_next
from sampler.registry import services as registry_services
from sampler.registry.models import ModelVersion
from tests.ranking import conftest as ranking_fixtures

ready_task = ranking_fixtures.ready_task
SURROGATE = "\\ud800"  # as JSON text: an unpaired surrogate once parsed


def _json(client, method: str, url: str, text: str, **extra):
    return getattr(client, method)(url, text, content_type="application/json", **extra)


def _refused(response, status: int = 400) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()


def test_the_renderer_writes_text_utf8_cannot_hold_as_json_escapes():
    rendered = JSONRenderer().render({"detail": "\ud800 is not a valid choice."})
    assert json.loads(rendered)["detail"].startswith("\ud800")


def test_a_lone_surrogate_in_a_choice_is_a_field_error(
    trainer_client, admin_client_, ready_task, trainer
):
    assignment = task_claim_next(trainer=trainer)
    submitted = _json(
        trainer_client,
        "post",
        f"/api/ranking/assignments/{assignment.pk}/submit/",
        f'{{"verdict": "{SURROGATE}", "rationale": "x"}}',
    )
    assert "surrogate" in json.dumps(_refused(submitted)["verdict"])
    created = _json(
        admin_client_,
        "post",
        "/api/projects/",
        f'{{"name": "p", "slug": "p1", "status": "{SURROGATE}"}}',
    )
    assert "surrogate" in json.dumps(_refused(created)["status"])
    listed = trainer_client.get("/api/conversations/?status=dra%00ft")
    assert "NUL" in json.dumps(_refused(listed)["status"])
    assert not Ranking.objects.exists()


def test_a_patch_of_policies_without_their_id_is_a_400(admin_client_, policy):
    project = project_create(name="P", slug="p", status="active")
    for policies in ([{}], [{"weight": 1}], [{"model_version_id": policy.pk}, {}]):
        response = _json(
            admin_client_,
            "patch",
            f"/api/projects/{project.pk}/",
            json.dumps({"policies": policies}),
        )
        assert "model_version_id" in json.dumps(_refused(response))
    assert not project.policies.exists()


def test_the_default_project_keeps_its_slug(admin_client_, trainer_client):
    default = project_default()
    response = _json(
        admin_client_, "patch", f"/api/projects/{default.pk}/", '{"slug": "renamed-default"}'
    )
    assert "keeps its slug" in json.dumps(_refused(response)["slug"])
    default.refresh_from_db()
    assert default.slug == DEFAULT_PROJECT_SLUG
    # Rows made without a project still find it.
    assert _json(trainer_client, "post", "/api/conversations/", '{"title": "x"}').status_code == 201


def test_the_default_project_stays_open_to_every_trainer(admin_client_):
    """Work made without a project lands in it, for anyone: no group can have it to itself
    (the API and the admin site refuse alike)."""
    from django.contrib.auth.models import Group

    default = project_default()
    group = Group.objects.create(name="experts")
    response = _json(
        admin_client_,
        "patch",
        f"/api/projects/{default.pk}/",
        json.dumps({"trainer_group_ids": [group.pk]}),
    )
    assert "open to every trainer" in json.dumps(_refused(response)["trainer_group_ids"])
    page = admin_client_.post(
        f"/admin/ranking/project/{default.pk}/change/",
        {"name": default.name, "slug": default.slug, "trainer_groups": [group.pk]},
    )
    assert page.status_code == 200 and "open to every trainer" in page.content.decode()
    assert not default.trainer_groups.exists()


@pytest.mark.parametrize("name", ["micro", "MICRO"])
def test_a_name_taken_between_the_check_and_the_insert_is_a_validation_error(
    policy, monkeypatch, name
):
    # Two registrations at once: both pass the name's check and full_clean, the table's
    # constraint (the name in any case) stops one.
    taken, checks = registry_services.model_version_name_taken, []

    def free_at_first(**kwargs):
        checks.append(kwargs)
        return None if len(checks) == 1 else taken(**kwargs)

    monkeypatch.setattr(registry_services, "model_version_name_taken", free_at_first)
    monkeypatch.setattr(ModelVersion, "full_clean", lambda self, **kwargs: None)
    with pytest.raises(Exception) as refused:
        registry_services.model_version_register(name=name, path=policy.path)
    assert type(refused.value).__name__ == "ValidationError"
    assert "A model version named micro already exists" in str(refused.value)
    assert list(ModelVersion.objects.values_list("name", flat=True)) == ["micro"]


def test_a_ranking_alternative_is_no_message_of_the_editor(trainer_client, ready_task, trainer):
    conversation = ready_task.source_message.conversation
    Conversation.objects.filter(pk=conversation.pk).update(owner=trainer, status="draft")
    candidate = conversation.messages.filter(is_candidate=True).first()
    url = f"/api/conversations/{conversation.pk}"
    for method, path, field, extra in (
        ("post", f"{url}/messages/", "parent_id", {"content": "x"}),
        ("put", f"{url}/draft/", "editing_id", {"content": "x"}),
        ("post", "/api/generation-jobs/", "prefix_message_id", {"n": 1}),
    ):
        body = json.dumps({field: candidate.pk, **extra})
        assert field in _refused(_json(trainer_client, method, path, body))
    assert not Draft.objects.exists()


def test_a_ranking_that_contradicts_itself_or_repeats_a_flag_is_refused(
    trainer_client, ready_task, trainer
):
    assignment = task_claim_next(trainer=trainer)
    url = f"/api/ranking/assignments/{assignment.pk}/submit/"
    contradiction = {"verdict": "cannot_rank", "rationale": "x", "cannot_rank": False}
    refused = _refused(_json(trainer_client, "post", url, json.dumps(contradiction)))
    assert "Contradicts cannot_rank" in json.dumps(refused["verdict"])
    ids = assignment.presentation_order
    twice = {"ordering": [[i] for i in ids], "flags": {str(ids[0]): ["harmful", "harmful"]}}
    assert "repeated" in json.dumps(_refused(_json(trainer_client, "post", url, json.dumps(twice))))
    assert not Ranking.objects.exists()


def test_unknown_or_repeated_query_parameters_are_refused(trainer_client, ready_task):
    misspelt = trainer_client.post("/api/ranking/claim/?projekt=first")
    assert "projekt" in _refused(misspelt)["detail"]
    twice = trainer_client.post("/api/ranking/claim/?project=a&project=b")
    assert _refused(twice)["project"] == ["Give this parameter once."]
    assert not Assignment.objects.exists()
    paged = trainer_client.get("/api/conversations/?limit=1&limit=2")
    assert _refused(paged)["limit"] == ["Give this parameter once."]


def test_the_api_root_without_its_slash_is_json(trainer_client, settings):
    settings.DEBUG = True  # Django's HTML page lists every URL pattern there
    response = trainer_client.get("/api")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


def test_a_chunked_body_the_server_cannot_read_is_a_411_and_creates_nothing(trainer_client):
    response = _json(
        trainer_client, "post", "/api/conversations/", "", HTTP_TRANSFER_ENCODING="chunked"
    )
    assert "Content-Length" in _refused(response, 411)["detail"]
    assert not Conversation.objects.exists()
    # A server that decodes chunked bodies (gunicorn) says so: the body is read.
    read = _json(
        trainer_client,
        "post",
        "/api/conversations/",
        '{"title": "chunked"}',
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input_terminated": True},
    )
    assert read.status_code == 201 and Conversation.objects.get().title == "chunked"


@pytest.mark.parametrize("declared", ["5_0", " 19", "+19", "19 ", "-1", "١٩", "0x13"])
def test_a_content_length_not_written_in_digits_is_a_400_and_creates_nothing(
    trainer_client, declared
):
    """Python's int() reads these as numbers: the body was read to a length the client never
    meant (past its end: a 500 here, a request left waiting on a real socket)."""
    response = _json(
        trainer_client, "post", "/api/conversations/", '{"title": "x"}', CONTENT_LENGTH=declared
    )
    assert "Content-Length" in _refused(response, 400)["detail"]
    assert not Conversation.objects.exists()


def test_a_page_address_visited_with_a_method_it_does_not_take_says_so_on_a_page(
    trainer_client,
):
    """`/write/new/` takes a form's POST: visited, it was Django's empty 405 (a blank page)."""
    visited = trainer_client.get("/write/new/")
    assert visited.status_code == 405 and visited["Allow"] == "POST"
    page = visited.content.decode()
    assert "Not a page to visit" in page and 'href="/"' in page
    # htmx and the API keep their own answers.
    bare = trainer_client.get("/write/new/", headers={"HX-Request": "true"})
    assert bare.status_code == 405 and not bare.content
    api = trainer_client.put("/api/conversations/")
    assert api.status_code == 405 and api["Content-Type"].startswith("application/json")
