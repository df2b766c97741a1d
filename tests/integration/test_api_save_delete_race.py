"""An admin changing a model version or a project through the API while another admin deletes
it, on PostgreSQL.

The change found the row, then waited for the delete under way (the service locks the row
before it checks and saves it), and found it gone: a server error. It is the 404 a change of a
row that is not there gets, in words, and nothing is written (the row is not made again)."""

import json

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from ranking.projects.services import project_create
from tests.conftest import racing, recording_thread, served_version
from tests.ranking.projects.test_projects import _page_fields

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _model_version() -> tuple:
    version = served_version("doomed", 4096)
    return version, f"/api/model-versions/{version.pk}/", {"context_length": 2048}


def _project() -> tuple:
    project = project_create(name="Doomed", slug="doomed")
    return project, f"/api/projects/{project.pk}/", {"description": "Edited."}


@pytest.mark.parametrize(
    ("make", "what"), [(_model_version, "model version"), (_project, "project")]
)
def test_an_api_change_of_a_row_another_admin_deletes_is_a_404(admin_user, make, what):
    row, url, body = make()
    deleting_admin, api_admin = Client(), Client()
    deleting_admin.force_login(admin_user)
    api_admin.force_login(admin_user)
    admin_name = f"{row._meta.app_label}_{row._meta.model_name}"
    outcome: dict = {}

    def change():
        response = api_admin.patch(url, json.dumps(body), content_type="application/json")
        return response.status_code, response.json()

    saver = recording_thread(change, outcome, "answer")
    with racing(saver, what="the change") as race:
        deleted = deleting_admin.post(
            reverse(f"admin:{admin_name}_delete", args=[row.pk]), {"post": "yes"}
        )
        assert deleted.status_code == 302

    assert race.waited, outcome
    assert outcome == {"answer": (404, {"detail": f"No {what} with that id."})}, outcome
    assert not type(row).objects.filter(pk=row.pk).exists()


def test_a_project_page_save_of_a_project_another_admin_deletes_says_so(admin_user):
    """The project's own page (not the admin's): its save waited for the delete and found the
    row gone, a server error; it says so on the projects' page, nothing written."""
    project = project_create(name="Doomed", slug="doomed")
    deleting_admin, page_admin = Client(), Client()
    deleting_admin.force_login(admin_user)
    page_admin.force_login(admin_user)
    url = reverse("ranking:project-detail", args=["doomed"])
    fields = _page_fields(page_admin.get(url)) | {"description": "Edited."}
    outcome: dict = {}

    def save():
        response = page_admin.post(url, fields)
        said = [str(message) for message in get_messages(response.wsgi_request)]
        return response.status_code, response.get("Location"), said

    saver = recording_thread(save, outcome, "answer")
    with racing(saver, what="the save") as race:
        deleted = deleting_admin.post(
            reverse("admin:ranking_project_delete", args=[project.pk]), {"post": "yes"}
        )
        assert deleted.status_code == 302

    assert race.waited, outcome
    assert outcome == {
        "answer": (
            302,
            reverse("ranking:project-manage"),
            [
                "The project “Doomed” was deleted while this page was open; nothing of this "
                "save was kept."
            ],
        )
    }, outcome
    assert not type(project).objects.filter(pk=project.pk).exists()
