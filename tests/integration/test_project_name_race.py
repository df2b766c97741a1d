"""Two saves giving projects one name or slug at the same moment (an admin renaming one, an
admin or the API adding or renaming another), on PostgreSQL.

Each save checks that no other project has the name or slug (in any letter case) before it
writes: run together, both checks read the table before either save committed, both passed,
and the second save ran into the constraint. The second is answered as the check answers, on
the field (the admin's form again; the API's 400), and nothing of it is saved."""

import json

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse

from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project
from ranking.projects.services import project_create
from tests.conftest import logged_in_client as _admin
from tests.conftest import project_admin_fields, racing, racing_then_freeing, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _taken(field: str, value: str, stored: str) -> str:
    case = "" if value == stored else f"; {field}s that differ only in letter case are one"
    return f"A project with the {field} {stored!r} already exists{case}."


# What the first admin renames a project to.
SHARED = {"name": "Shared", "slug": "shared"}


def _racing_a_rename(first_admin: Client, first: Project, save) -> tuple:
    """What ``save()`` answered, run on a connection of its own while the first admin's
    rename of ``first`` to SHARED is under way (written, not yet committed)."""
    fields = project_admin_fields(first_admin, first) | SHARED
    outcome: dict = {}
    saver = recording_thread(save, outcome, "answer")
    with racing(saver, what="the second save") as race:
        answer = first_admin.post(reverse("admin:ranking_project_change", args=[first.pk]), fields)
        assert answer.status_code == 302

    assert race.waited, outcome
    assert set(outcome) == {"answer"}, outcome
    return outcome["answer"]


@pytest.mark.parametrize(
    ("page", "field", "value"),
    [
        ("change", "name", "Shared"),
        ("change", "name", "SHARED"),
        ("change", "slug", "Shared"),
        ("add", "slug", "shared"),
        ("add", "name", "shared"),
    ],
)
def test_an_admin_save_racing_a_rename_to_the_same_name_or_slug_is_refused_on_the_form(
    admin_user, page, field, value
):
    first = project_create(name="First", slug="first")
    second = project_create(name="Second", slug="second")
    # Logged in and read before the race: a login writes the user's row, which the other would
    # wait for.
    first_admin, second_admin = _admin(admin_user), _admin(admin_user)
    second_fields = project_admin_fields(second_admin, second)
    url, posted = {
        "change": (reverse("admin:ranking_project_change", args=[second.pk]), second_fields),
        "add": (
            reverse("admin:ranking_project_add"),
            second_fields | {"name": "Third", "slug": "third"},
        ),
    }[page]

    def save_second():
        response = second_admin.post(url, posted | {field: value})
        return response.status_code, response.context["adminform"].form.errors

    answer = _racing_a_rename(first_admin, first, save_second)

    assert answer == (200, {field: [_taken(field, value, SHARED[field])]})
    assert dict(Project.objects.exclude(slug=DEFAULT_PROJECT_SLUG).values_list("pk", "name")) == {
        first.pk: "Shared",
        second.pk: "Second",
    }
    second.refresh_from_db()
    assert second.slug == "second"
    # The losing save left no entry in the admin's history.
    assert list(LogEntry.objects.values_list("object_id", flat=True)) == [str(first.pk)]


@pytest.mark.parametrize("method", ["post", "patch"])
@pytest.mark.parametrize("field", ["name", "slug"])
def test_an_api_save_racing_a_rename_to_the_same_name_or_slug_is_a_400(admin_user, method, field):
    first = project_create(name="First", slug="first")
    second = project_create(name="Second", slug="second")
    first_admin, api_admin = _admin(admin_user), _admin(admin_user)
    value = {"name": "SHARED", "slug": "Shared"}[field]
    url, body = {
        "post": ("/api/projects/", {"name": "Third", "slug": "third", field: value}),
        "patch": (f"/api/projects/{second.pk}/", {field: value}),
    }[method]

    def save_by_api():
        response = getattr(api_admin, method)(
            url, json.dumps(body), content_type="application/json"
        )
        return response.status_code, response.json()

    answer = _racing_a_rename(first_admin, first, save_by_api)

    assert answer == (400, {field: [_taken(field, value, SHARED[field])]})
    assert not Project.objects.filter(slug="third").exists()
    second.refresh_from_db()
    assert (second.name, second.slug) == ("Second", "second")


def test_an_admin_save_refused_once_is_not_saved_again_when_the_name_is_freed_meanwhile(
    admin_user,
):
    """The refused save is answered with the form, not saved a second time: the project that
    took the name renamed away before the page answers (a third admin), the name is refused
    all the same, nothing written (saving again could have met a fourth admin's save: a server
    error)."""
    first = project_create(name="First", slug="first")
    second = project_create(name="Second", slug="second")
    first_admin, second_admin = _admin(admin_user), _admin(admin_user)
    first_fields = project_admin_fields(first_admin, first) | SHARED
    second_fields = project_admin_fields(second_admin, second) | {"name": "Shared"}
    outcome: dict = {}

    def save_second():
        url = reverse("admin:ranking_project_change", args=[second.pk])
        response = second_admin.post(url, second_fields)
        form = response.context["adminform"].form if response.status_code == 200 else None
        return response.status_code, form and form.errors

    saver = recording_thread(save_second, outcome, "answer")
    freed = Project.objects.filter(pk=first.pk)
    with racing_then_freeing(saver, freed, {"name": "Away", "slug": "away"}, outcome):
        url = reverse("admin:ranking_project_change", args=[first.pk])
        assert first_admin.post(url, first_fields).status_code == 302

    assert outcome == {
        "freed": None,
        "answer": (200, {"name": [_taken("name", "Shared", "Shared")]}),
    }
    assert dict(Project.objects.exclude(slug=DEFAULT_PROJECT_SLUG).values_list("pk", "name")) == {
        first.pk: "Away",
        second.pk: "Second",
    }
