"""The same file imported twice at once, on PostgreSQL: its conversations are saved once.

Two uploads of one file (a double click, two admins, a command run twice) each read which
fingerprints the project holds before either has committed. ``conversations_import`` takes an
advisory lock on the project's imports before that read, so the second waits for the first to
commit and then skips every line as already imported."""

import io

import pytest
from django.db import transaction

from labeling.conversations.models import Conversation
from labeling.conversations.services import conversations_import
from ranking.projects.services import project_create
from tests.conftest import WAIT_SECONDS, racing, recording_thread, wait_for_lock_or_end
from tests.labeling.conversations.conftest import GOOD_PLAIN, GOOD_WITH_SYSTEM, jsonl

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FILE = jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)


def _import(owner, **options):
    report = conversations_import(lines=io.BytesIO(FILE), owner=owner, **options)
    return (report.created, [line for line, _ in report.skipped])


def test_an_import_racing_the_same_import_waits_and_skips_every_line(trainer):
    outcome: dict = {}
    second = recording_thread(lambda: _import(trainer), outcome, "report")
    with racing(second, what="the second import") as race:
        first = _import(trainer)

    assert race.waited
    assert first == (2, [])
    assert outcome == {"report": (0, [1, 2])}
    assert Conversation.objects.count() == 2


def test_imports_into_different_projects_do_not_wait_for_each_other(trainer):
    safety = project_create(name="Safety", slug="safety", status="active")
    outcome: dict = {}
    other = recording_thread(lambda: _import(trainer, project_id=safety.pk), outcome, "report")
    with transaction.atomic():
        assert _import(trainer) == (2, [])
        other.start()
        wait_for_lock_or_end(other, what="the import into another project")
        assert not other.is_alive(), "it waited for the import into the default project"
    other.join(WAIT_SECONDS)

    assert outcome == {"report": (2, [])}
    assert Conversation.objects.count() == 4
