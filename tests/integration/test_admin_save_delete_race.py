"""An admin saving a model version or a project while another admin deletes it, on PostgreSQL.

The saving admin's page read the row before the delete committed; its save then found no row
to write: a server error. It is answered with a message saying the row was deleted meanwhile,
back on the list, and nothing is written (the row is not made again)."""

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from ranking.projects.services import project_create
from tests.conftest import logged_in_client as _admin
from tests.conftest import (
    model_version_admin_fields,
    project_admin_fields,
    racing,
    recording_thread,
    served_version,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _saved_while_deleted(deleting_admin: Client, delete_url: str, save) -> tuple:
    """What ``save()`` answered, run on a connection of its own while the delete posted to
    ``delete_url`` is under way (written, not yet committed)."""
    outcome: dict = {}
    saver = recording_thread(save, outcome, "answer")
    with racing(saver, what="the save") as race:
        answer = deleting_admin.post(delete_url, {"post": "yes"})
        assert answer.status_code == 302
    assert race.waited, outcome
    assert set(outcome) == {"answer"}, outcome
    return outcome["answer"]


def _answer(response) -> tuple:
    return (
        response.status_code,
        response.get("Location"),
        [str(message) for message in get_messages(response.wsgi_request)],
    )


def _model_version(client: Client) -> tuple:
    version = served_version("doomed", 4096)
    return version, "sampler_modelversion", model_version_admin_fields(version)


def _project(client: Client) -> tuple:
    project = project_create(name="Doomed", slug="doomed")
    return project, "ranking_project", project_admin_fields(client, project)


@pytest.mark.parametrize(
    ("make", "what"), [(_model_version, "model version"), (_project, "project")]
)
def test_an_admin_saving_a_row_another_deletes_is_told_it_was_deleted(admin_user, make, what):
    deleting_admin, saving_admin = _admin(admin_user), _admin(admin_user)
    row, admin_name, fields = make(saving_admin)

    def save():
        response = saving_admin.post(
            reverse(f"admin:{admin_name}_change", args=[row.pk]),
            fields | {"description": "Edited."},
        )
        return _answer(response)

    answer = _saved_while_deleted(
        deleting_admin, reverse(f"admin:{admin_name}_delete", args=[row.pk]), save
    )

    assert answer == (
        302,
        reverse(f"admin:{admin_name}_changelist"),
        [
            f"The {what} “{row.name}” was deleted while this page was open; "
            "nothing of this save was kept."
        ],
    )
    assert not type(row).objects.filter(pk=row.pk).exists()
    # Only the delete's history entry.
    assert list(LogEntry.objects.values_list("action_flag", flat=True)) == [DELETION]
