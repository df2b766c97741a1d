"""The API's contract for bad input, through real requests: every answer under /api/ is JSON,
input is strict (no coercion, no NUL or lone surrogates, bounded depth and size, ids checked for
existence and ownership), and trainers see no server paths."""

import base64
import inspect
import io
import json
import re

import pytest
from django.test import Client, override_settings

from config.api import ApiView
from config.api_schema import ErrorDocumentingAutoSchema
from config.parsers import MAX_JSON_DEPTH, BoundedJSONParser, RequestBodyTooLarge
from config.text import NUL_MESSAGE
from labeling.conversations import selectors as conversation_selectors
from labeling.conversations import services as conversation_services
from labeling.conversations.models import Conversation, Draft, Message
from ranking.models import Assignment, Ranking
from ranking.projects import services as project_services
from ranking.rank import services as rank_services
from ranking.rank.services import task_claim_next
from sampler.generation.models import GenerationJob
from sampler.jobs.models import INTERNAL_ERROR_MESSAGE
from tests.labeling.conftest import model_reply
from tests.ranking.conftest import finished_conversation, model_version_create, task_from_source
from tests.sampler.conftest import suggestion_job, suggestion_sample


def _post(client: Client, url: str, body: object, method: str = "post"):
    return getattr(client, method)(url, json.dumps(body), content_type="application/json")


def _field_error(response, field: str) -> str:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    return json.dumps(response.json()[field])


# ---- one error format ----------------------------------------------------------------------


@pytest.mark.parametrize("as_trainer", [False, True])
def test_an_unknown_api_path_is_a_json_404(client, trainer_client, as_trainer):
    response = (trainer_client if as_trainer else client).get("/api/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"detail": "No API endpoint at this path."}


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/model-versions/999999/", "No model version with that id."),
        ("/api/conversations/999999/", "No conversation with that id."),
        ("/api/projects/999999/", "No project with that id."),
    ],
)
def test_a_row_not_found_is_named_in_words_not_by_its_class(admin_client_, path, detail):
    response = admin_client_.get(path)
    assert response.status_code == 404 and response.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("method", "path", "detail"),
    [
        ("get", "/api/conversations/01/", "No conversation with the id '01'"),
        ("get", "/api/conversations/abc/", "No conversation with the id 'abc'"),
        ("get", "/api/conversations/7/messages/x/", None),
        ("patch", "/api/model-versions/01/", "No model version with the id '01'"),
        ("get", "/api/jobs/generation/abc/", "No generation job with the id 'abc'"),
        ("get", "/api/generation-jobs/99999999999999999999/", "No generation job with the id"),
    ],
)
def test_an_id_in_the_path_not_written_canonically_is_a_404_naming_it(
    admin_client_, method, path, detail
):
    """``01`` is no other name for row 1, and ``abc`` no id: the 404 says which segment is not
    an id and how one is written, rather than that no endpoint is there."""
    response = getattr(admin_client_, method)(path, content_type="application/json")
    assert response.status_code == 404
    if detail is None:
        assert response.json() == {"detail": "No API endpoint at this path."}
        return
    assert response.json()["detail"].startswith(detail)
    assert "whole number from 1, written without leading zeros" in response.json()["detail"]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_a_path_without_its_slash_is_a_json_404_naming_it_not_a_redirect(
    trainer_client, settings, debug, method
):
    # A redirect would have the client send a POST again as a GET, without its body (and
    # Django raises on it under DEBUG).
    settings.DEBUG = debug
    body = {} if method == "get" else {"data": "{}", "content_type": "application/json"}
    response = getattr(trainer_client, method)("/api/conversations", **body)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert "API paths end with a slash: /api/conversations/" in response.json()["detail"]
    assert not Conversation.objects.exists()


@pytest.mark.parametrize(
    ("body", "detail"),
    [("[1, 2]", "Expected a dictionary, but got list"), ("null", "No data provided")],
)
def test_a_body_that_is_no_object_is_a_detail_sentence(trainer_client, body, detail):
    response = trainer_client.post("/api/conversations/", body, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json()) == {"detail"} and detail in response.json()["detail"]


@pytest.mark.parametrize("item", [5, "x", [1], True])
def test_a_list_item_that_is_no_object_is_a_list_of_sentences_under_its_index(
    admin_client_, trainer_client, item
):
    # ``detail`` is for the whole request: an item's error is a field's, a list of sentences.
    expected = ["Each item must be an object."]
    project = project_services.project_create(name="P", slug="p", status="active")
    answers = {
        "policies": [
            _post(admin_client_, "/api/projects/", {"name": "X", "slug": "x", "policies": [item]}),
            _post(admin_client_, f"/api/projects/{project.pk}/", {"policies": [item]}, "patch"),
        ],
        "messages": [
            _post(trainer_client, "/api/generation-jobs/", {"messages": [item], "n": 1}),
        ],
    }
    for field, responses in answers.items():
        for response in responses:
            assert response.status_code == 400, response.content
            assert response.json() == {field: {"0": expected}}
    assert not project.policies.exists() and not GenerationJob.objects.exists()


def test_a_nested_objects_field_errors_are_shaped_as_the_top_levels(admin_client_):
    body = {"name": "X", "slug": "x", "policies": [{"model_version_id": "1"}]}
    response = _post(admin_client_, "/api/projects/", body)
    assert response.status_code == 400
    assert set(response.json()["policies"]["0"]) == {"model_version_id"}
    assert isinstance(response.json()["policies"]["0"]["model_version_id"], list)


def test_a_field_error_is_a_list_even_when_raised_as_one_sentence(trainer_client, conversation):
    response = _post(
        trainer_client,
        f"/api/conversations/{conversation.pk}/messages/",
        {"content": "x", "parent_id": 999999},
    )
    assert response.status_code == 400
    assert response.json() == {"parent_id": ["No message with that id in this conversation."]}


def test_a_wrong_method_is_a_json_405_with_allow(trainer_client):
    response = trainer_client.get("/api/ranking/claim/")
    assert response.status_code == 405
    assert "detail" in response.json() and "POST" in response["Allow"]


def test_a_browser_asking_for_html_still_gets_json(trainer_client):
    response = trainer_client.get(
        "/api/conversations/999999/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8"
    )
    assert response.status_code == 404 and response["Content-Type"] == "application/json"


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1000)
def test_an_oversized_body_is_a_json_413_stating_the_limit(trainer_client):
    response = _post(trainer_client, "/api/conversations/", {"title": "x" * 2000})
    assert response.status_code == 413
    assert "the limit is 1000 bytes" in response.json()["detail"]
    assert not Conversation.objects.exists()


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100)
def test_a_body_without_a_length_is_still_cut_at_the_limit():
    # A chunked body declares no length: the parser reads one byte past the limit, no more.
    stream = io.BytesIO(b'{"title": "' + b"x" * 10_000 + b'"}')
    with pytest.raises(RequestBodyTooLarge, match="the limit is 100 bytes"):
        BoundedJSONParser().parse(stream)
    assert stream.tell() == 101


def test_bad_json_is_a_json_400(trainer_client):
    response = trainer_client.post(
        "/api/conversations/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400 and "JSON parse error" in response.json()["detail"]


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_nested_past_the_limit_is_a_400_stating_it(trainer_client, depth):
    body = '{"title": ' + "[" * depth + "]" * depth + "}"
    response = trainer_client.post("/api/conversations/", body, content_type="application/json")
    assert response.status_code == 400
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.json()["detail"]
    assert not Conversation.objects.exists()


def test_nan_is_not_json(trainer_client):
    response = trainer_client.post(
        "/api/generation-jobs/", '{"n": NaN}', content_type="application/json"
    )
    assert response.status_code == 400 and "NaN" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ('{"title": "a", "title": "b"}', "the key 'title' appears twice"),
        ('{"title": "a", "draft": {"x": 1, "x": 2}}', "the key 'x' appears twice"),
        ('{"title": ' + "9" * 5000 + "}", "more than 100 characters"),
        ('{"title": 1e999}', "Infinity"),
        ('{"title": 1.' + "5" * 5000 + "}", "more than 100 characters"),
    ],
)
def test_a_repeated_key_or_an_endless_number_is_a_400_saying_so(trainer_client, body, detail):
    response = trainer_client.post("/api/conversations/", body, content_type="application/json")
    assert response.status_code == 400
    assert detail in response.json()["detail"] and "sys." not in response.json()["detail"]
    assert not Conversation.objects.exists()


def test_a_missing_csrf_token_is_a_json_403(trainer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trainer)
    response = _post(client, "/api/conversations/", {"title": "x"})
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert not Conversation.objects.exists()


def test_a_server_error_is_a_json_500_without_traceback(trainer, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret internals /srv/tandem/var")

    monkeypatch.setattr(conversation_selectors, "conversation_list", broken)
    client = Client(raise_request_exception=False)
    client.force_login(trainer)
    response = client.get("/api/conversations/")
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"detail", "request_id"}
    assert body["request_id"] == response["X-Request-ID"]
    assert "secret" not in response.content.decode() and "Traceback" not in body["detail"]


def test_basic_credentials_with_a_nul_are_a_json_401(client, trainer):
    credentials = base64.b64encode(b"tess\x00:secret").decode()
    response = client.get("/api/conversations/", HTTP_AUTHORIZATION=f"Basic {credentials}")
    assert response.status_code == 401 and "NUL" in response.json()["detail"]


def test_html_pages_keep_their_html_errors(trainer_client):
    response = trainer_client.get("/write/999999/")
    assert response.status_code == 404 and "text/html" in response["Content-Type"]


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data; boundary=BoUnDaRy", "application/x-www-form-urlencoded"]
)
def test_a_form_or_file_body_is_a_400_and_creates_nothing(trainer_client, content_type):
    body = (
        b'--BoUnDaRy\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n\x00\x01\x02\r\n--BoUnDaRy--\r\n"
    )
    response = trainer_client.post("/api/conversations/", body, content_type=content_type)
    assert response.status_code == 400
    assert "Send a JSON body" in response.json()["detail"]
    assert not Conversation.objects.exists()


# ---- strict input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": 123}, "title"),
        ({"title": True}, "title"),
        ({"title": ["a"]}, "title"),
        ({"title": "a\u0000b"}, "title"),
        ({"instructions": {"a": 1}}, "instructions"),
    ],
)
def test_conversation_fields_are_strict(trainer_client, body, field):
    response = _post(trainer_client, "/api/conversations/", body)
    assert _field_error(response, field)
    assert not Conversation.objects.exists()


def test_a_lone_surrogate_is_a_field_error(trainer_client, conversation):
    body = '{"content": "broken \\ud800 text"}'
    response = trainer_client.post(
        f"/api/conversations/{conversation.pk}/messages/", body, content_type="application/json"
    )
    assert "surrogate" in _field_error(response, "content")
    assert not conversation.messages.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"content": 123}, "content", "Must be a string"),
        ({"content": "a\u0000"}, "content", "NUL"),
        ({"content": "hi", "parent_id": "1"}, "parent_id", "Must be an integer"),
        ({"content": "hi", "parent_id": 1.0}, "parent_id", "Must be an integer"),
        ({"content": "hi", "parent_id": True}, "parent_id", "Must be an integer"),
        ({"content": "hi", "sample_id": 2**70}, "sample_id", "less than or equal"),
        ({"content": "hi", "role": 1}, "role", "Must be a string"),
        ({"content": "hi", "role": " user "}, "role", "Must be 'user' or 'assistant'"),
        ({"content": "hi", "role": "user\n"}, "role", "Must be 'user' or 'assistant'"),
    ],
)
def test_message_fields_are_strict(trainer_client, conversation, body, field, message):
    response = _post(trainer_client, f"/api/conversations/{conversation.pk}/messages/", body)
    assert message in _field_error(response, field)
    assert not conversation.messages.exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"n": True, "messages": [{"role": "user", "content": "hi"}]}, "n", "integer"),
        ({"n": 1.9, "messages": [{"role": "user", "content": "hi"}]}, "n", "integer"),
        ({"n": "3", "messages": [{"role": "user", "content": "hi"}]}, "n", "integer"),
        ({"n": 1, "messages": [{"role": "user", "content": 123}]}, "messages", "string"),
        ({"n": 1, "messages": [{"role": ["user"], "content": "hi"}]}, "messages", "string"),
        ({"n": 1, "messages": [{"role": "user", "content": "a\u0000"}]}, "messages", "NUL"),
        ({"n": 1, "messages": [{"role": "user", "content": "hi"}], "seed": "1"}, "seed", "integer"),
        (
            {"n": 1, "messages": [{"role": "user", "content": "hi"}], "params": {"top_k": 1.9}},
            "params",
            "integer",
        ),
        (
            {
                "n": 1,
                "messages": [{"role": "user", "content": "hi"}],
                "params": {"temperature": True},
            },
            "params",
            "number",
        ),
        (
            {
                "n": 1,
                "messages": [{"role": "user", "content": "hi"}],
                "params": {"max_new_tokens": 1.9},
            },
            "params",
            "integer",
        ),
    ],
)
def test_generation_requests_are_strict(trainer_client, body, field, message):
    response = _post(trainer_client, "/api/generation-jobs/", body)
    assert message in _field_error(response, field)
    assert not GenerationJob.objects.exists()


def test_an_unstorable_string_in_a_list_is_refused_naming_its_item_counted_from_1(
    trainer_client,
):
    body = {
        "n": 1,
        "messages": [{"role": "user", "content": "hi"}],
        "params": {"stop": ["a\u0000", "b"]},
    }
    response = _post(trainer_client, "/api/generation-jobs/", body)
    assert response.status_code == 400
    assert response.json()["params"] == [f"Value of 'stop', item 1: {NUL_MESSAGE}"]
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("url", "body", "named"),
    [
        (
            "/api/generation-jobs/",
            {"n": 1, "messages": [{"role": "user", "content": "hi"}], "model_version_id": 99999},
            "'model_version_id'",
        ),
        ("/api/conversations/", {"title": "Trip", "mode": "bogus", "project_id": 1}, "'mode', "),
        ("/api/conversations/", {"title": "Trip", "titel": "typo"}, "'titel'"),
    ],
)
def test_a_field_the_endpoint_does_not_take_is_refused_by_name_not_ignored(
    trainer_client, url, body, named
):
    response = _post(trainer_client, url, body)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail.startswith("Unknown fields: ") and named in detail
    assert not GenerationJob.objects.exists() and not Conversation.objects.exists()


def test_unknown_field_names_are_quoted_shortened_and_counted(trainer_client):
    body = {"title": "Trip", **{f"{'x' * 60}{index}": 1 for index in range(7)}}
    detail = _post(trainer_client, "/api/conversations/", body).json()["detail"]
    assert detail == f"Unknown fields: {', '.join([repr('x' * 40)] * 5)} and 2 more."


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/api/projects/?status=active"),
        ("get", "/api/model-versions/?kind=reward"),
        ("get", "/api/jobs/queues/?queue=training"),
        ("get", "/api/conversations/{conversation}/?branch=1"),
        ("get", "/api/projects/1/progress/?since=2026-01-01"),
        ("post", "/api/conversations/?project=default"),
        ("post", "/api/conversations/{conversation}/finish/?force=true"),
    ],
)
def test_a_query_parameter_the_endpoint_does_not_take_is_refused_by_name_not_ignored(
    admin_client_, admin_user, method, url
):
    # A filter the endpoint does not have would filter nothing; a field sent in the query
    # string instead of the body would be left out of what is created.
    conversation = conversation_services.conversation_create(owner=admin_user, title="Trip")
    before = Conversation.objects.count()
    url = url.format(conversation=conversation.pk)
    response = admin_client_.get(url) if method == "get" else _post(admin_client_, url, {})
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert response.json()["detail"].startswith("Unknown parameters: ")
    assert Conversation.objects.count() == before
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DRAFT


def test_an_operation_that_takes_no_query_parameters_still_answers_a_wrong_method_405(
    trainer_client,
):
    response = trainer_client.delete("/api/model-versions/?kind=reward")
    assert response.status_code == 405
    # OPTIONS describes the endpoint whatever the query it was asked about.
    assert trainer_client.options("/api/conversations/?status=draft").status_code == 200
    assert trainer_client.head("/api/conversations/?status=draft").status_code == 200


# ---- ids: existence and ownership ----------------------------------------------------------


@pytest.fixture
def offered(conversation, trainer, other_trainer):
    """A conversation whose active leaf is a model reply, a suggestion job for the next turn
    made for ``trainer``, and one made for ``other_trainer``."""
    version = model_version_create("policy")
    question = conversation_services.message_append(
        conversation=conversation, author=trainer, content="Hi"
    )
    reply = model_reply(conversation, question, version, "Hello")

    def sample_for(user, prefix):
        return suggestion_sample(user, version, prefix, role="user", text="More?")

    return {
        "mine": sample_for(trainer, reply),
        "others": sample_for(other_trainer, reply),
        "other_turn": sample_for(trainer, question),
    }


@pytest.mark.parametrize(
    ("which", "message"),
    [
        (None, "No suggestion of yours with that id."),
        ("others", "No suggestion of yours with that id."),
        ("other_turn", "made for another turn"),
    ],
)
def test_a_draft_takes_only_a_suggestion_offered_for_its_turn(
    trainer_client, conversation, offered, which, message
):
    sample_id = offered[which].pk if which else 999_999
    url = f"/api/conversations/{conversation.pk}/draft/"
    response = _post(trainer_client, url, {"content": "x", "sample_id": sample_id}, "put")
    assert message in _field_error(response, "sample_id")
    assert not Draft.objects.exists()


def test_a_draft_keeps_the_suggestion_offered_for_its_turn(trainer_client, conversation, offered):
    url = f"/api/conversations/{conversation.pk}/draft/"
    response = _post(trainer_client, url, {"content": "x", "sample_id": offered["mine"].pk}, "put")
    assert response.status_code == 200, response.content
    assert Draft.objects.get().sample_id == offered["mine"].pk


def test_a_draft_keeps_the_side_it_is_typed_for(trainer_client, conversation):
    url = f"/api/conversations/{conversation.pk}/draft/"
    response = _post(trainer_client, url, {"content": "x", "role": "user"}, "put")
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "user" and Draft.objects.get().role == "user"
    # Left out: not known, as a draft saved before drafts kept it.
    response = _post(trainer_client, url, {"content": "y"}, "put")
    assert response.json()["role"] == "" and Draft.objects.get().role == ""


@pytest.mark.parametrize("role", ["system", "User", " user", "nobody"])
def test_a_draft_typed_for_no_side_is_refused(trainer_client, conversation, role):
    url = f"/api/conversations/{conversation.pk}/draft/"
    response = _post(trainer_client, url, {"content": "x", "role": role}, "put")
    assert "Must be 'user', 'assistant' or ''." in _field_error(response, "role")
    assert not Draft.objects.exists()


def test_an_edits_draft_takes_no_side(trainer_client, conversation, trainer):
    url = f"/api/conversations/{conversation.pk}/draft/"
    message = conversation_services.message_append(
        conversation=conversation, author=trainer, content="hi"
    )
    body = {"content": "x", "editing_id": message.pk, "role": message.role}
    assert "it takes none" in _field_error(_post(trainer_client, url, body, "put"), "role")
    assert not Draft.objects.exists()


def test_a_message_from_another_trainers_suggestion_is_refused(
    trainer_client, conversation, offered
):
    url = f"/api/conversations/{conversation.pk}/messages/"
    response = _post(trainer_client, url, {"content": "More?", "sample_id": offered["others"].pk})
    assert "No suggestion of yours" in _field_error(response, "sample_id")
    assert conversation.messages.count() == 2


def test_the_html_draft_refuses_another_trainers_suggestion(trainer_client, conversation, offered):
    response = trainer_client.post(
        f"/write/{conversation.pk}/draft/",
        {"content": "x", "sample_id": offered["others"].pk},
    )
    assert response.status_code == 422
    assert "No suggestion of yours" in response.content.decode()
    assert not Draft.objects.exists()


@pytest.fixture
def assignment(trainer, other_trainer) -> Assignment:
    source = finished_conversation(other_trainer).active_leaf
    task_from_source(source, model_version=model_version_create("policy"), alternatives=2)
    return task_claim_next(trainer=trainer)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "a\u0000b"}, "reason"),
        ({"reason": 5}, "reason"),
    ],
)
def test_a_ranking_skip_reason_is_strict(trainer_client, assignment, body, field):
    response = _post(trainer_client, f"/api/ranking/assignments/{assignment.pk}/skip/", body)
    assert _field_error(response, field)
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cannot_rank": 1}, "cannot_rank"),
        ({"cannot_rank": "true"}, "cannot_rank"),
        ({"ordering": [["1"]]}, "ordering"),
        ({"ordering": [[1.0]]}, "ordering"),
        ({"flags": {"x": ["bad"]}}, "flags"),
        ({"flag_notes": {"1": 7}}, "flag_notes"),
        ({"rationale": ["why"]}, "rationale"),
    ],
)
def test_a_ranking_submission_is_strict(trainer_client, assignment, body, field):
    response = _post(trainer_client, f"/api/ranking/assignments/{assignment.pk}/submit/", body)
    assert _field_error(response, field)
    assert not Ranking.objects.exists()


# ---- least exposure ------------------------------------------------------------------------


def test_trainers_see_no_model_paths_staff_do(trainer_client, admin_client_):
    model_version_create("/srv/models/secret-policy-path")
    trainer_rows = trainer_client.get("/api/model-versions/").json()
    assert trainer_rows and all("path" not in row for row in trainer_rows)
    assert "/srv/models" not in json.dumps(trainer_rows).replace(trainer_rows[0]["name"], "")
    staff_rows = admin_client_.get("/api/model-versions/").json()
    assert staff_rows[0]["path"] == "/srv/models/secret-policy-path"


def test_trainers_see_an_internal_job_error_as_one_sentence_staff_see_it_all(
    trainer, trainer_client, admin_client_
):
    trace = 'OSError: cannot read /srv/tandem/models/x\n  File "/srv/tandem/sampler/x.py", line 3\n'
    job = GenerationJob.objects.create(
        model_version=model_version_create("policy"),
        n=1,
        seed=1,
        requested_by=trainer,
        status=GenerationJob.Status.FAILED,
        error=trace,
    )
    mine = trainer_client.get(f"/api/generation-jobs/{job.pk}/")
    assert mine.status_code == 200
    assert mine.json()["error"] == INTERNAL_ERROR_MESSAGE and "/srv" not in mine.content.decode()
    assert admin_client_.get(f"/api/generation-jobs/{job.pk}/").json()["error"] == trace
    # The job's page: one sentence to its trainer; to staff the exception's line, as on every
    # job page (the record, traceback and all, is the admin's and this API's).
    page = trainer_client.get(f"/generation/jobs/{job.pk}/")
    assert page.status_code == 200
    assert INTERNAL_ERROR_MESSAGE in page.content.decode() and "/srv" not in page.content.decode()
    staff = admin_client_.get(f"/generation/jobs/{job.pk}/").content.decode()
    assert "OSError: cannot read /srv/tandem/models/x" in staff
    assert "/srv/tandem/sampler/x.py" not in staff


def test_a_trainer_cannot_read_another_trainers_conversation(trainer_client, other_trainer):
    theirs = conversation_services.conversation_create(owner=other_trainer, title="Private")
    response = trainer_client.get(f"/api/conversations/{theirs.pk}/")
    assert response.status_code == 404 and "Private" not in response.content.decode()
    listed = trainer_client.get("/api/conversations/").json()
    assert listed["count"] == 0 and Message.objects.count() == 0


# ---- schema --------------------------------------------------------------------------------


def _schema(client: Client) -> dict:
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def test_the_schema_is_json_by_default_and_yaml_when_asked(trainer_client):
    plain = trainer_client.get("/api/schema/")
    assert plain.status_code == 200
    assert plain["Content-Type"].startswith("application/vnd.oai.openapi+json")
    assert plain.json()["openapi"].startswith("3.")
    yaml = trainer_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert yaml.status_code == 200 and yaml.content.startswith(b"openapi:")


@pytest.mark.parametrize("query", ["?format=yaml", "?lang=de", "?x=1"])
def test_the_schema_refuses_a_query_parameter_by_name_like_every_endpoint(trainer_client, query):
    # ?format=yaml answered the JSON schema without a word, as if YAML had been given.
    response = trainer_client.get(f"/api/schema/{query}")
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    name = query[1:].split("=")[0]
    assert response.json() == {"detail": f"Unknown parameters: {name!r}."}
    # Asked for YAML, the error is JSON still, like every answer under /api/.
    yaml = trainer_client.get(f"/api/schema/{query}", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert yaml.status_code == 400 and yaml["Content-Type"] == "application/json"
    assert yaml.json() == response.json()


def test_the_schema_documents_the_error_responses_of_every_operation(trainer_client):
    schema = _schema(trainer_client)
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]
    assert len(operations) > 20
    for path, method, operation in operations:
        # 429: every operation is throttled per user, and unauthenticated 401s per address.
        # 411: a chunked body the server cannot read (config.api.ApiErrorMiddleware).
        for code in ("400", "401", "403", "404", "405", "411", "413", "429", "500"):
            documented = operation["responses"].get(code)
            assert documented and "application/json" in documented["content"], (path, method, code)


def test_the_schema_states_the_limits_the_services_refuse_beyond(admin_client_):
    """The schema said 20000 characters for a skip reason, a flag note and a rationale, and no
    bound on a project's policies, while the server refuses more than the services' limits:
    each is declared from the constant the service checks."""
    schemas = _schema(admin_client_)["components"]["schemas"]
    assert schemas["AssignmentSkipInput"]["properties"]["reason"]["maxLength"] == (
        rank_services.MAX_SKIP_REASON_CHARS
    )
    submit = schemas["RankingSubmitInput"]["properties"]
    assert submit["flag_notes"]["additionalProperties"]["maxLength"] == (
        rank_services.MAX_FLAG_NOTE_CHARS
    )
    assert submit["rationale"]["maxLength"] == rank_services.MAX_RATIONALE_CHARS
    for name in ("ProjectInput", "PatchedProjectInput"):
        policies = schemas[name]["properties"]["policies"]
        assert policies["maxItems"] == project_services.MAX_POLICIES, name
        assert policies["items"] == {"$ref": "#/components/schemas/PolicyInput"}


def test_an_error_on_a_list_as_a_whole_is_a_list_of_sentences_as_any_fields(admin_client_):
    """Too many policies, or policies that are no list, came back as
    ``{"policies": {"detail": "..."}}``, where every other field's error is a list of strings;
    an item's own errors stay by its index."""
    version = model_version_create("p")
    too_many = [{"model_version_id": version.pk}] * (project_services.MAX_POLICIES + 1)
    for policies, words in ((too_many, str(project_services.MAX_POLICIES)), ("p", "list")):
        body = {"name": "X", "slug": "x", "policies": policies}
        response = _post(admin_client_, "/api/projects/", body)
        assert response.status_code == 400, response.content
        errors = response.json()["policies"]
        assert isinstance(errors, list) and all(isinstance(error, str) for error in errors)
        assert words in errors[0], errors
    group = _post(
        admin_client_, "/api/projects/", {"name": "X", "slug": "x", "trainer_group_ids": "g"}
    )
    assert isinstance(group.json()["trainer_group_ids"], list)


def _view_bases(cls: type) -> set[type]:
    """``cls`` and every API view class that others are made from."""
    subclasses = cls.__subclasses__()
    bases = {cls} if subclasses else set()
    for subclass in subclasses:
        bases |= _view_bases(subclass)
    return bases


def test_no_operation_is_described_by_a_base_class_docstring(admin_client_):
    # A view without a docstring of its own was described by the one of the class it is made
    # from ("The base of every API view: ..."), which says nothing about the operation.
    schema = _schema(admin_client_)
    base_docs = {inspect.cleandoc(base.__doc__) for base in _view_bases(ApiView) if base.__doc__}
    assert inspect.cleandoc(ApiView.__doc__) in base_docs
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            description = operation.get("description", "").strip()
            assert description, (path, method)
            assert description not in base_docs, (path, method)


def test_the_schema_takes_a_description_only_from_the_view_itself_or_its_handler():
    class Described(ApiView):
        """What this one does."""

        def get(self, request):
            pass

    class Undescribed(Described):
        pass

    class HandlerDescribed(Described):
        def get(self, request):
            """What its GET does."""

    def description(view_class: type) -> str:
        schema = ErrorDocumentingAutoSchema()
        schema.view, schema.method = view_class(), "GET"
        return schema.get_description()

    assert description(Described) == "What this one does."
    assert description(Undescribed) == ""
    assert description(HandlerDescribed) == "What its GET does."


def test_the_schema_shows_model_paths_as_staff_only(trainer_client):
    schema = _schema(trainer_client)
    listing = schema["paths"]["/api/model-versions/"]["get"]["responses"]["200"]
    assert "`path` is included for staff only" in listing["description"]
    with_path = schema["components"]["schemas"]["ModelVersionWithPath"]
    assert "Staff only" in with_path["properties"]["path"]["description"]
    assert "path" not in with_path.get("required", [])


def test_the_schema_marks_no_staff_only_field_of_a_project_required(trainer_client):
    """A trainer's project has none of them: one marked required would be a field the
    documented answer lacks."""
    with_config = _schema(trainer_client)["components"]["schemas"]["ProjectWithConfig"]
    staff_only = [
        name
        for name, field in with_config["properties"].items()
        if "Staff only" in field.get("description", "")
    ]
    assert "pool_error" in staff_only and "sampling_params" in staff_only
    assert set(staff_only).isdisjoint(with_config.get("required", []))


# ---- ids in paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_an_id_in_a_path_is_canonical_leading_zeros_are_a_json_404(
    trainer_client, conversation, settings, debug
):
    """``/api/conversations/01/`` is no other name for conversation 1: one row, one URL."""
    settings.DEBUG = debug
    pk = conversation.pk
    assert trainer_client.get(f"/api/conversations/{pk}/").status_code == 200
    for path in (f"0{pk}", f"00{pk}", "0", str(2**63)):
        response = trainer_client.get(f"/api/conversations/{path}/")
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()
        draft = _post(trainer_client, f"/api/conversations/{path}/draft/", {"content": "x"}, "put")
        assert draft.status_code == 404 and draft["Content-Type"] == "application/json"
    assert not Draft.objects.exists()
    assert trainer_client.get(f"/write/0{pk}/").status_code == 404


def test_every_id_in_a_url_pattern_is_read_by_the_canonical_converter():
    """No pattern reads an id with Django's ``int`` (which takes ``01`` as 1), and reversing
    still writes the plain number."""
    from django.urls import get_resolver, reverse
    from django.urls.converters import IntConverter
    from django.urls.resolvers import URLResolver

    def patterns(resolver):
        for entry in resolver.url_patterns:
            yield entry
            if isinstance(entry, URLResolver):
                yield from patterns(entry)

    ints = [
        str(entry.pattern)
        for entry in patterns(get_resolver())
        for converter in getattr(entry.pattern, "converters", {}).values()
        if type(converter) is IntConverter
    ]
    assert ints == []
    assert reverse("labeling:editor", args=[7]) == "/write/7/"
    assert reverse("api-draft-save", args=[7]) == "/api/conversations/7/draft/"


@pytest.mark.parametrize(
    ("path", "staff"),
    [
        ("/api/ranking/claim/", False),
        ("/api/generation-jobs/{job}/cancel/", False),
        ("/api/generation-jobs/{job}/retry/", False),
        ("/api/jobs/generation/{job}/cancel/", True),
        ("/api/jobs/generation/{job}/retry/", True),
    ],
)
def test_an_operation_that_takes_no_body_refuses_a_field_by_name_and_changes_nothing(
    trainer_client, admin_client_, trainer, path, staff
):
    """A field such an operation ignored was a silent misunderstanding: ``{"project": ...}``
    sent to the claim claimed from any project, a cancel's ``{"reason": ...}`` went nowhere."""
    conversation = conversation_services.conversation_create(owner=trainer)
    question = conversation_services.message_append(
        conversation=conversation, author=trainer, content="Hi"
    )
    job = suggestion_job(trainer, model_version_create("policy"), question)
    client = admin_client_ if staff else trainer_client
    response = client.post(
        path.format(job=job.pk), json.dumps({"project": "safety"}), content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "'project'" in response.json()["detail"]
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED
    assert not Assignment.objects.exists()


def test_options_describes_each_endpoint_as_the_schema_does_not_by_its_code_comments(
    admin_client_,
):
    """OPTIONS gives an endpoint's name and what each of its methods does, in the words of its
    operations in the schema, not the view class's docstring (written for the code: "List and
    create share the collection URL, so they share one view.")."""
    schema = admin_client_.get("/api/schema/").json()
    for path, operations in schema["paths"].items():
        url = re.sub(r"\{kind\}", "generation", path)
        url = re.sub(r"\{\w+\}", "1", url)
        response = admin_client_.options(url)
        assert response.status_code == 200, url
        described = response.json()
        assert not described["name"].endswith("Api"), described
        for method, operation in operations.items():
            if method in {"get", "post", "put", "patch", "delete"}:
                assert operation["description"] in described["description"], (url, method)
    listed = admin_client_.options("/api/conversations/").json()
    assert listed["name"] == "Conversation List"
    assert "share one view" not in listed["description"]
    assert listed["description"].startswith("GET: Conversations the caller may see")
    assert "\nPOST: Start a new conversation" in listed["description"]
