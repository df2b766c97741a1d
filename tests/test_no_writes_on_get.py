"""A GET never writes: every GET route from the URL resolver, as each role, leaves the database
as it was (sessions and ``last_login`` aside).

Routes are found by walking the resolver, so a new page is covered the day it is added. Ids in
a route are those of realistic rows (a conversation with turns and a draft, feedback, a ranking
task with an assignment, a generation job with samples, a model version), owned by the trainer
making the request, so views get past their lookups and do their real work.
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.exceptions import NoReverseMatch

from accounts.services import api_token_create
from labeling.conversations import services as conversation_services
from labeling.feedback.selectors import feedback_target_get
from labeling.feedback.services import feedback_rate
from labeling.models import Conversation, Message
from ranking.rank.services import task_claim_next
from sampler.models import GenerationJob, ModelVersion, Sample
from tests.labeling.conftest import model_reply
from tests.ranking.conftest import finished_conversation, model_version_create, task_from_source

# Query strings that make a route do its real work rather than answer 400.
QUERY = {"api-export-stream": "?format=rankings", "api-export-features": "?format=rankings"}

ROLES = ("anonymous", "trainer", "staff")


def _get_routes() -> list[tuple[str, list[str]]]:
    """(name, parameter names) of every named route; unnamed ones are listed separately."""
    routes, unnamed = [], []

    def walk(patterns, namespace: str, params: list[str]) -> None:
        for pattern in patterns:
            names = [*params, *pattern.pattern.regex.groupindex]
            if isinstance(pattern, URLResolver):
                inner = pattern.namespace or ""
                full = f"{namespace}:{inner}" if namespace and inner else namespace or inner
                walk(pattern.url_patterns, full, names)
            elif isinstance(pattern, URLPattern):
                if pattern.name:
                    full = f"{namespace}:{pattern.name}" if namespace else pattern.name
                    routes.append((full, names, pattern))
                else:
                    unnamed.append(str(pattern.pattern))

    walk(get_resolver().url_patterns, "", [])
    return routes, unnamed


def _snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, but sessions and users' last login."""
    state = {}
    for model in apps.get_models():
        if model is Session:
            continue
        fields = [f.attname for f in model._meta.concrete_fields if f.attname != "last_login"]
        state[model._meta.label] = sorted(model.objects.order_by().values_list(*fields), key=repr)
    return state


def _changes(before: dict, after: dict) -> list[str]:
    return [
        f"{label}: {len(before[label])} -> {len(after[label])} rows"
        + ("" if len(before[label]) != len(after[label]) else " (a row changed)")
        for label in before
        if before[label] != after[label]
    ]


def _populate(trainer, other_trainer, admin_user) -> dict[str, int | str]:
    """Rows for every kind of id a route takes, owned by ``trainer`` where ownership matters."""
    version = model_version_create("policy-v1")
    conversation = conversation_services.conversation_create(owner=trainer, title="Plans")
    question = conversation_services.message_append(
        conversation=conversation, author=trainer, content="Hi"
    )
    turns = [question, model_reply(conversation, question, version, "Hello, how can I help?")]
    job = GenerationJob.objects.create(
        model_version=version,
        prefix_message=turns[-1],
        prompt_messages=[{"role": m.role, "content": m.content} for m in turns],
        n=1,
        params={"max_new_tokens": 8},
        seed=1,
        purpose=GenerationJob.Purpose.SUGGESTION,
        status=GenerationJob.Status.SUCCEEDED,
        requested_by=trainer,
    )
    Sample.objects.create(
        job=job, index=0, text="Sure.", token_count=2, finish_reason=Sample.FinishReason.END_OF_TURN
    )
    conversation_services.draft_save(conversation=conversation, author=trainer, content="So")
    target = feedback_target_get(kind="message", target_id=turns[-1].pk, user=trainer)
    feedback = feedback_rate(user=trainer, target=target, rating="up")
    # A ranking task on another trainer's conversation, leased to ``trainer``.
    source = finished_conversation(other_trainer).active_leaf
    task_from_source(source, model_version=version, alternatives=2)
    assignment = task_claim_next(trainer=trainer)
    assert assignment is not None
    token = api_token_create(user=trainer, name="script")
    return {
        "conversation_id": conversation.pk,
        "message_id": turns[-1].pk,
        "job_id": job.pk,
        "feedback_id": feedback.pk,
        "kind": "message",
        "target_id": turns[-1].pk,
        "number": 1,
        "assignment_id": assignment.pk,
        "version_id": version.pk,
        "attack_id": 1,
        "run_id": 1,
        "export_id": 1,
        "item_id": 1,
        "token_id": token.token.pk,
        "ranking_id": 1,
        "task_id": assignment.task_id,
        "project_id": assignment.task.project_id,
        "slug": assignment.task.project.slug,
    }


def _kwargs(name: str, params: list[str], pattern, ids: dict) -> dict | None:
    kwargs = {}
    for param in params:
        if param == "id" and name == "admin:auth_user_password_change":
            kwargs[param] = get_user_model().objects.order_by("pk").first().pk
        elif param == "object_id":
            model = getattr(pattern.callback, "model_admin", None)
            model = model.model if model is not None else Conversation
            row = model.objects.order_by("pk").first()
            kwargs[param] = str(row.pk) if row is not None else "1"
        elif param == "app_label":
            kwargs[param] = "labeling"
        elif param == "content_type_id":
            kwargs[param] = 1
        elif param == "kind" and name.startswith("api-job"):
            kwargs[param] = "generation"
        elif param in ids:
            kwargs[param] = ids[param]
        else:
            return None
    return kwargs


def _client(role: str, trainer, admin_user) -> Client:
    client = Client()
    if role == "trainer":
        client.force_login(trainer)
    elif role == "staff":
        client.force_login(admin_user)
    return client


def _walk(client: Client, ids: dict) -> tuple[list[str], int]:
    """Request every GET route; the writes found and how many routes were requested."""
    routes, unnamed = _get_routes()
    # Only the admin's redirects (to add a slash, to an object's change page) have no name.
    assert all(p == "<path:object_id>/" or "(?P<url>" in p for p in unnamed), unnamed
    writes, requested = [], 0
    for name, params, pattern in routes:
        kwargs = _kwargs(name, params, pattern, ids)
        assert kwargs is not None, f"{name}: no id for {params}; add one to _populate"
        try:
            url = reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            continue  # a route reachable only through another parameter's values
        before = _snapshot()
        response = client.get(url + QUERY.get(name, ""))
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)
        requested += 1
        assert response.status_code < 500, f"GET {url} answered {response.status_code}"
        changes = _changes(before, _snapshot())
        if changes:
            writes.append(f"GET {url} ({name}): {'; '.join(changes)}")
    return writes, requested


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_no_get_route_writes_on_an_empty_install(role, trainer, admin_user):
    writes, requested = _walk(
        _client(role, trainer, admin_user),
        ids={
            "conversation_id": 1,
            "message_id": 1,
            "job_id": 1,
            "token_id": 1,
            "ranking_id": 1,
            "task_id": 1,
            "project_id": 1,
            "slug": "default",
            "feedback_id": 1,
            "kind": "message",
            "target_id": 1,
            "number": 1,
            "assignment_id": 1,
            "version_id": 1,
            "attack_id": 1,
            "run_id": 1,
            "export_id": 1,
            "item_id": 1,
        },
    )
    assert requested > 50
    assert writes == []


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_no_get_route_writes_with_realistic_data(role, trainer, other_trainer, admin_user):
    ids = _populate(trainer, other_trainer, admin_user)
    assert Message.objects.exists() and ModelVersion.objects.exists()
    writes, requested = _walk(_client(role, trainer, admin_user), ids)
    assert requested > 50
    assert writes == []
