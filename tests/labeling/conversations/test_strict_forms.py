"""Bad input through the HTML forms and query strings: a clear error, nothing lost, no 500."""

from html import unescape

import pytest

from config.text import LINE_MESSAGE
from labeling.conversations import services
from labeling.conversations.models import Conversation
from tests.labeling.conftest import HTMX, write_turns
from tests.labeling.conversations.conftest import MULTI_LINE_TITLES


def test_a_nul_in_a_turn_is_refused_with_the_fields_message_and_the_text_kept(
    trainer_client, trainer
):
    conversation = services.conversation_create(owner=trainer, title="Plans")
    response = trainer_client.post(
        f"/write/{conversation.pk}/messages/", {"content": "Where to\x00go?"}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "Null characters are not allowed." in page
    assert "Where togo?" in page  # the typed text comes back, less the NUL
    assert not conversation.messages.exists()


def test_a_nul_in_a_new_conversations_title_creates_nothing(trainer_client):
    response = trainer_client.post("/write/new/", {"title": "Trip\x00"})
    assert response.status_code == 422
    page = unescape(response.content.decode())
    # The API's message, once, naming the field; the title comes back less the NUL.
    assert "Title: NUL characters (\\u0000) are not allowed." in page
    assert "Null characters are not allowed." not in page
    assert 'value="Trip"' in page and "\x00" not in page
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("title", MULTI_LINE_TITLES)
def test_a_new_conversations_title_of_more_than_one_line_creates_nothing(trainer_client, title):
    """Refused as the API refuses it (a form posted by a script can hold any character)."""
    response = trainer_client.post("/write/new/", {"title": title})
    assert response.status_code == 422
    assert f"Title: {LINE_MESSAGE}" in unescape(response.content.decode())
    assert not Conversation.objects.exists()


def test_a_search_with_a_nul_is_searched_without_it(trainer_client, trainer):
    services.conversation_create(owner=trainer, title="Weekend plans")
    response = trainer_client.get("/write/", {"q": "Week\x00end"})
    assert response.status_code == 200
    assert "Weekend plans" in response.content.decode()
    api = trainer_client.get("/api/conversations/", {"q": "Week\x00end"})
    assert api.status_code == 200 and api.json()["count"] == 1


def test_a_bad_field_in_an_edited_turn_is_refused_with_its_message_and_the_edit_kept(
    trainer_client, trainer
):
    conversation = services.conversation_create(owner=trainer, title="Plans")
    _question, reply = write_turns(conversation, trainer, "Where to?", "Lisbon.")
    url = f"/write/messages/{reply.pk}/branch/"

    response = trainer_client.post(url, {"content": "Porto,\x00 in spring."}, **HTMX)

    assert response.status_code == 422
    page = response.content.decode()
    assert "Null characters are not allowed." in page and "the message is empty" not in page
    assert "Porto, in spring.</textarea>" in page  # the edit comes back, less the NUL
    # A suggestion id that is not a number is refused, not dropped from a saved turn.
    response = trainer_client.post(url, {"content": "Porto.", "sample_id": "abc"}, **HTMX)
    assert response.status_code == 422
    assert "Enter a whole number." in response.content.decode()
    assert conversation.messages.count() == 2
