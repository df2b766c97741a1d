"""Two saves of the guidelines at once, on PostgreSQL: each gets its own version number.

A double-clicked "Save as version N" (or two admins saving together) sends two edits. The second
must wait for the first and then see the version it made: the same text again is "Nothing
changed", other text is the version after it, never a clash on the version number (a 500)."""

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.guidelines import services
from labeling.guidelines.models import GuidelineVersion
from tests.conftest import WAIT_SECONDS, racing, recording_thread, wait_for_lock_or_end

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("second_text", "expected"),
    [
        ("Be kind.", {"refused": ["Nothing changed: edit the text to make a new version."]}),
        ("Be kind and brief.", {"number": 3}),
    ],
)
def test_a_guideline_save_racing_another_waits_for_it(admin_user, second_text, expected):
    services.guideline_version_ensure_current()
    outcome: dict = {}
    second = recording_thread(
        lambda: services.guideline_version_create(author=admin_user, text=second_text).number,
        outcome,
        "number",
        refusal=(ValidationError, lambda error: error.message_dict["text"]),
    )
    with racing(second, what="the second save"):
        first = services.guideline_version_create(author=admin_user, text="Be kind.")

    assert first.number == 2
    assert outcome == expected
    assert sorted(GuidelineVersion.objects.values_list("number", flat=True)) == sorted(
        {1, 2, *([3] if "number" in expected else [])}
    )


def test_a_guideline_save_does_not_hold_up_work_that_refers_to_its_project(admin_user, trainer):
    """The save takes turns with other saves of its project by locking the project's row, but
    not in a way that makes a trainer's new conversation (a row that refers to the project)
    wait for the save's transaction to end."""
    from labeling.models import Conversation
    from ranking.projects.selectors import project_default

    services.guideline_version_ensure_current()
    project = project_default()
    outcome: dict = {}
    writer = recording_thread(
        lambda: Conversation.objects.create(owner=trainer, project=project).pk, outcome, "id"
    )
    with transaction.atomic():
        services.guideline_version_create(author=admin_user, text="Be kind.")
        writer.start()
        wait_for_lock_or_end(writer, what="the new conversation")
        # Still inside the save's transaction: the conversation was written meanwhile.
        writer.join(WAIT_SECONDS / 10)
        finished_first = not writer.is_alive()
    writer.join(WAIT_SECONDS)
    assert finished_first and "id" in outcome
