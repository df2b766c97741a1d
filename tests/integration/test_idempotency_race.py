"""Two appends sent at once with one Idempotency-Key, on PostgreSQL: one turn is written, and
both requests get its answer.

A client whose connection dropped may retry while its first request is still being handled.
The first request's key row is inserted, not yet committed, when the second one's insert comes:
PostgreSQL makes the second wait on the unique constraint until the first commits, then fail,
and the second answers from the stored response. The first is held inside its work by a lock
on the conversation (``message_append`` locks its row), so the two surely overlap."""

import threading

import pytest
from django.db import connection, transaction
from django.test import Client

from labeling.conversations import services
from labeling.conversations.models import Conversation, Message
from tests.conftest import WAIT_SECONDS, post_json, sessions_waiting_for_a_lock, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_two_appends_sent_at_once_with_one_key_write_one_turn(trainer):
    conversation = services.conversation_create(owner=trainer, title="Race")
    url = f"/api/conversations/{conversation.pk}/messages/"
    answers: dict[str, object] = {}

    def send(name: str) -> None:
        client = Client()
        client.force_login(trainer)
        try:
            answers[name] = post_json(client, url, {"content": "Hello"}, idempotency_key="k-1")
        finally:
            connection.close()

    first = threading.Thread(target=send, args=("first",))
    second = threading.Thread(target=send, args=("second",))
    with transaction.atomic():
        Conversation.objects.select_for_update().get(pk=conversation.pk)
        first.start()
        # The first request holds its key, uncommitted, and waits for the conversation.
        wait_until(lambda: sessions_waiting_for_a_lock() >= 1, interval=0.02, what="first")
        second.start()
        # The second waits for the first's key.
        wait_until(lambda: sessions_waiting_for_a_lock() >= 2, interval=0.02, what="second")
        assert first.is_alive() and second.is_alive()
    first.join(WAIT_SECONDS)
    second.join(WAIT_SECONDS)
    assert not first.is_alive() and not second.is_alive()

    assert answers["first"].status_code == answers["second"].status_code == 201
    assert answers["first"].json() == answers["second"].json()
    assert answers["second"].headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in answers["first"].headers
    assert Message.objects.filter(conversation=conversation).count() == 1
