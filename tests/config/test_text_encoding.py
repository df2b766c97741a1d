"""Text sent in a form's body or an address's query that is not UTF-8 is refused in words,
nothing written, instead of being stored with its bytes replaced by U+FFFD."""

import pytest
from django.urls import reverse

from labeling.conversations.models import Conversation

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("body", [b"title=caf%E9", b"title=caf\xe9", b"title=%ED%A0%80"])
def test_a_form_whose_text_is_not_utf8_is_refused_and_nothing_is_written(trainer_client, body):
    response = trainer_client.post(reverse("labeling:conversation-create"), body, content_type=FORM)
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
    assert not Conversation.objects.exists()


def test_utf8_form_text_and_a_real_replacement_character_are_kept(trainer_client):
    body = b"title=caf%C3%A9+%EF%BF%BD&x=a%26b"
    response = trainer_client.post(reverse("labeling:conversation-create"), body, content_type=FORM)
    assert response.status_code == 302
    assert Conversation.objects.get().title == "café \ufffd"


def test_a_page_address_whose_query_is_not_utf8_is_a_400_page(trainer_client):
    response = trainer_client.get(reverse("labeling:conversation-list") + "?status=dr%FFaft")
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()


def test_an_api_query_that_is_not_utf8_is_a_json_400(trainer_client):
    response = trainer_client.get("/api/conversations/?status=%FF")
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["detail"]


def test_the_refusal_page_leads_back_to_the_page_the_form_was_on(trainer_client):
    page = reverse("labeling:conversation-list")
    response = trainer_client.post(
        reverse("labeling:conversation-create"),
        b"title=%FF",
        content_type=FORM,
        HTTP_REFERER=f"http://testserver{page}",
    )
    assert response.status_code == 400
    assert f'href="http://testserver{page}"' in response.content.decode()
    elsewhere = trainer_client.post(
        reverse("labeling:conversation-create"),
        b"title=%FF",
        content_type=FORM,
        HTTP_REFERER="https://elsewhere.example/",
    )
    assert 'href="/"' in elsewhere.content.decode()
