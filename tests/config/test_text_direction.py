"""Text a trainer or a model wrote, shown or typed, takes its direction from its own first
letters (dir="auto"): Arabic or Hebrew reads from the right in a page laid out left to right."""

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from labeling.conversations import services
from tests.labeling.conftest import write_turns
from tests.labeling.feedback.conftest import sample_job

pytestmark = pytest.mark.django_db

# What holds someone's text: every box it is typed in, every rendered turn or reply.
TEXT_CLASSES = {"markdown", "sample-text", "suggestion-text"}


class _WithoutDirection(HTMLParser):
    """The text holders of a page that lack dir="auto", as (tag, class)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str]] = []
        self.holders = 0

    def handle_starttag(self, tag, attrs) -> None:
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        typed = tag == "textarea" or (tag == "input" and attributes.get("name") == "title")
        if typed or classes & TEXT_CLASSES:
            self.holders += 1
            if attributes.get("dir") != "auto":
                self.found.append((tag, attributes.get("class") or attributes.get("name") or ""))


def without_direction(response) -> list[tuple[str, str]]:
    assert response.status_code == 200
    page = _WithoutDirection()
    page.feed(response.content.decode())
    assert page.holders > 0  # the page shows what this test is about
    return page.found


def test_the_editor_and_write_pages_lay_out_right_to_left_text_by_its_letters(
    trainer, trainer_client
):
    conversation = services.conversation_create(
        owner=trainer, title="שיחה", instructions="اكتب بالعربية"
    )
    write_turns(conversation, trainer, "مرحبا، كيف حالك؟", "שלום! מה שלומך?")

    editor = trainer_client.get(f"/write/{conversation.pk}/")
    assert without_direction(editor) == []
    assert '<h1 dir="auto">שיחה</h1>' in editor.content.decode()
    assert without_direction(trainer_client.get(reverse("labeling:conversation-list"))) == []
    assert without_direction(trainer_client.get(reverse("sampler:generate"))) == []


def test_the_feedback_and_guidelines_pages_lay_out_text_by_its_letters(
    policy, admin_user, admin_client_
):
    sample = sample_job(admin_user).samples.first()
    assert without_direction(admin_client_.get(f"/write/feedback/sample/{sample.pk}/")) == []
    assert without_direction(admin_client_.get(reverse("labeling:guidelines"))) == []
