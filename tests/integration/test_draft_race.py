"""A composer draft saved while its turn is being sent, on PostgreSQL: the send wins.

The editor's autosave can leave the browser just before the trainer presses Send. If the save
reads the conversation before the send commits and writes after it, the sent text would come
back as the next turn's draft. ``draft_save`` locks the conversation's row for its check, as
``message_append`` does, so it waits for the send and then sees that the turn moved on."""

import pytest
from django.core.exceptions import ValidationError

from labeling.conversations import services
from labeling.conversations.models import Draft
from tests.conftest import racing, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_draft_save_racing_the_send_of_its_turn_is_refused(trainer):
    conversation = services.conversation_create(owner=trainer, title="Race")
    outcome: dict[str, object] = {}
    saver = recording_thread(
        lambda: services.draft_save(
            conversation=conversation, author=trainer, content="Hello there", after_id=0
        ),
        outcome,
        "saved",
        refusal=(ValidationError, lambda error: error.message_dict["content"]),
    )
    with racing(saver, what="the draft save"):
        # The send is under way: its turn is written, not yet committed, the row locked.
        sent = services.message_append(conversation=conversation, author=trainer, content="Hello")

    assert "refused" in outcome, outcome
    assert "reload the page" in outcome["refused"][0]
    assert not Draft.objects.filter(conversation=conversation).exists()
    conversation.refresh_from_db()
    assert conversation.active_leaf == sent
