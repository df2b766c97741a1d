"""``Idempotency-Key`` on the API's creating POSTs (config/idempotency.py): a retried request
gets the first answer back and writes nothing; the key is checked, bound to its request, and
expires. The race of two requests with one key is in tests/integration/test_idempotency_race.py.
"""

import hashlib
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import IdempotencyKey
from accounts.tasks import delete_expired_idempotency_keys
from labeling.conversations import services as conversation_services
from labeling.conversations.models import Conversation, Message
from ranking.projects.models import Project
from sampler.registry.models import ModelVersion
from tests.conftest import PASSWORD, post_json

CONVERSATIONS_URL = "/api/conversations/"
SERVED_VERSION = {
    "name": "served",
    "backend": "openai",
    "backend_options": {"base_url": "http://model-server:8000/v1", "model": "policy"},
    "context_length": 4096,
}


def post(client: Client, url: str, data: dict | None = None, *, key: str | None = None):
    return post_json(client, url, data, idempotency_key=key)


@pytest.fixture
def messages_url(trainer) -> str:
    conversation = conversation_services.conversation_create(owner=trainer, title="Retries")
    return f"/api/conversations/{conversation.pk}/messages/"


def test_a_retried_append_adds_one_turn_and_answers_as_the_first_time(trainer_client, messages_url):
    first = post(trainer_client, messages_url, {"content": "Hello"}, key="append-1")
    retried = post(trainer_client, messages_url, {"content": "Hello"}, key="append-1")

    assert first.status_code == retried.status_code == 201
    assert retried.json() == first.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert Message.objects.filter(content="Hello").count() == 1


def test_without_a_key_a_repeated_append_adds_two_turns(trainer_client, messages_url):
    """The header is what makes a retry safe (the role check aside)."""
    post(trainer_client, messages_url, {"content": "Hello"})
    post(trainer_client, messages_url, {"content": "Hello"})
    assert Message.objects.filter(content="Hello").count() == 2


def test_a_key_sent_again_with_another_body_or_path_is_a_422_and_writes_nothing(
    trainer_client, messages_url
):
    post(trainer_client, messages_url, {"content": "Hello"}, key="k")

    other_body = post(trainer_client, messages_url, {"content": "Hello!"}, key="k")
    other_path = post(trainer_client, CONVERSATIONS_URL, {"title": "New"}, key="k")

    for response in (other_body, other_path):
        assert response.status_code == 422
        assert response.headers["Content-Type"] == "application/json"
        assert "used for another request" in response.json()["detail"]
    assert Message.objects.count() == 1
    assert not Conversation.objects.filter(title="New").exists()


def test_a_retry_of_the_same_json_written_otherwise_is_answered_as_the_first_time(
    trainer_client, messages_url
):
    """A client may serialise the body again for its retry: another key order, other spaces,
    a character escaped. The request is the same JSON, and is answered from the key."""
    bodies = [
        '{"content": "Café at 9?", "role": "user"}',
        '{"role":"user","content":"Café at 9?"}',
        '{\n  "role" : "user",\n  "content" : "Caf\\u00e9 at 9?"\n}',
    ]
    answers = [
        trainer_client.post(
            messages_url, body, content_type="application/json", headers={"Idempotency-Key": "k"}
        )
        for body in bodies
    ]

    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert [answer.headers.get("Idempotent-Replayed") for answer in answers] == [
        None,
        "true",
        "true",
    ]
    assert answers[1].json() == answers[2].json() == answers[0].json()
    assert Message.objects.filter(content="Café at 9?").count() == 1


def test_a_key_stored_with_the_hash_of_its_bodys_bytes_still_answers_those_bytes(
    trainer_client, messages_url
):
    """Keys stored before requests were compared as JSON hold the SHA-256 of the body's bytes:
    a retry of those bytes within the key's time is still answered from the key."""
    body = '{"content": "Hello", "role": "user"}'
    first = trainer_client.post(
        messages_url, body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    IdempotencyKey.objects.update(request_hash=hashlib.sha256(body.encode()).hexdigest())

    retried = trainer_client.post(
        messages_url, body, content_type="application/json", headers={"Idempotency-Key": "k"}
    )
    other = post(trainer_client, messages_url, {"content": "Hello!"}, key="k")

    assert retried.status_code == 201 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json() == first.json()
    assert other.status_code == 422
    assert Message.objects.filter(content__startswith="Hello").count() == 1


@pytest.mark.parametrize(
    "key",
    ["", "x" * 256, "clé", "tab\tkey", " leading", "trailing ", "nul\x00"],
    ids=["empty", "256 chars", "not ascii", "control", "leading space", "trailing space", "nul"],
)
def test_a_bad_key_is_a_json_400_and_writes_nothing(trainer_client, messages_url, key):
    response = post(trainer_client, messages_url, {"content": "Hello"}, key=key)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert "Idempotency-Key" in response.json()["detail"]
    assert not Message.objects.exists() and not IdempotencyKey.objects.exists()


def test_a_key_of_255_printable_characters_with_inner_spaces_is_taken(trainer_client, messages_url):
    key = "a b~" + "z" * 251
    assert post(trainer_client, messages_url, {"content": "Hi"}, key=key).status_code == 201
    assert IdempotencyKey.objects.get().key == key


def test_a_refused_request_stores_nothing_so_the_key_can_be_sent_again_corrected(
    trainer_client, messages_url
):
    refused = post(trainer_client, messages_url, {"content": "Hi", "role": "assistant"}, key="k")
    assert refused.status_code == 400 and "role" in refused.json()
    assert not IdempotencyKey.objects.exists()
    again = post(trainer_client, messages_url, {"content": "Hi", "role": "user"}, key="k")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert Message.objects.filter(content="Hi").count() == 1


def test_an_error_the_view_answers_rather_than_raises_stores_nothing_either(trainer_client):
    refused = post(trainer_client, CONVERSATIONS_URL, {"title": "A", "project": "nope"}, key="k")
    assert refused.status_code == 400 and "project" in refused.json()
    assert not IdempotencyKey.objects.exists()
    assert post(trainer_client, CONVERSATIONS_URL, {"title": "A"}, key="k").status_code == 201


def test_a_key_is_the_users_own(trainer_client, other_trainer):
    """Another user sending the same key makes their own conversation."""
    other_client = Client()
    other_client.force_login(other_trainer)
    mine = post(trainer_client, CONVERSATIONS_URL, {"title": "Same"}, key="shared")
    theirs = post(other_client, CONVERSATIONS_URL, {"title": "Same"}, key="shared")
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers


def test_an_expired_key_is_a_new_request_and_the_periodic_task_deletes_expired_keys(
    trainer_client, messages_url, settings
):
    settings.IDEMPOTENCY_KEY_TTL_SECONDS = 3600
    post(trainer_client, messages_url, {"content": "Hello"}, key="old")
    post(trainer_client, messages_url, {"content": "Hi"}, key="fresh")
    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )

    again = post(trainer_client, messages_url, {"content": "Hello"}, key="old")
    assert again.status_code == 201 and "Idempotent-Replayed" not in again.headers
    assert Message.objects.filter(content="Hello").count() == 2

    IdempotencyKey.objects.filter(key="old").update(
        created_at=timezone.now() - timedelta(seconds=3601)
    )
    assert delete_expired_idempotency_keys() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]


def test_a_get_with_a_key_writes_nothing(trainer_client, messages_url):
    conversation_url = messages_url.removesuffix("messages/")
    response = trainer_client.get(conversation_url, headers={"Idempotency-Key": "k"})
    assert response.status_code == 200
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    ("url", "body", "model"),
    [
        (CONVERSATIONS_URL, {"title": "Trip"}, Conversation),
        ("/api/projects/", {"name": "Helpfulness", "slug": "helpful"}, Project),
        ("/api/model-versions/", SERVED_VERSION, ModelVersion),
    ],
    ids=["conversation", "project", "model version"],
)
def test_a_retried_create_makes_one_row(admin_client_, url, body, model):
    before = model.objects.count()
    first = post(admin_client_, url, body, key="create-1")
    retried = post(admin_client_, url, body, key="create-1")
    assert first.status_code == 201, first.json()
    assert retried.status_code == 201 and retried.json() == first.json()
    assert model.objects.count() == before + 1


def test_every_creating_post_of_the_api_documents_the_key(admin_client_):
    """Each operation answering 201 takes the header (a new one without it fails here)."""
    schema = admin_client_.get("/api/schema/").json()
    creating, documented = set(), set()
    for path, operations in schema["paths"].items():
        post_operation = operations.get("post")
        if not post_operation or "201" not in post_operation["responses"]:
            continue
        creating.add(path)
        headers = {p["name"] for p in post_operation.get("parameters", []) if p["in"] == "header"}
        if "Idempotency-Key" in headers and "422" in post_operation["responses"]:
            documented.add(path)
    assert len(creating) >= 7
    assert creating == documented


def _session_client(user) -> Client:
    """A browser's client: logged in through the login page, CSRF checked as in production."""
    client = Client(enforce_csrf_checks=True)
    client.get("/accounts/login/")
    login = client.post(
        "/accounts/login/",
        {
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )
    assert login.status_code == 302
    return client


def test_a_session_client_sending_its_csrf_token_gets_the_same_idempotency(trainer):
    """The API takes the browser's session as it takes a token: a key is honoured either way
    (the CSRF check reads the body before the view does)."""
    client = _session_client(trainer)

    def send(body: dict, key: str):
        return client.post(
            CONVERSATIONS_URL,
            json.dumps(body),
            content_type="application/json",
            headers={"Idempotency-Key": key, "X-CSRFToken": client.cookies["csrftoken"].value},
        )

    first = send({"title": "idem test"}, "5a1f0c1e-session")
    retried = send({"title": "idem test"}, "5a1f0c1e-session")
    reused = send({"title": "another"}, "5a1f0c1e-session")

    assert first.status_code == 201, first.json()
    assert retried.status_code == 201 and retried.json() == first.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert reused.status_code == 422
    assert Conversation.objects.filter(owner=trainer).count() == 1
