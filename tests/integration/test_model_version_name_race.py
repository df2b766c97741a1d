"""Two admins giving model versions one name at the same moment (renaming one, adding one), on
PostgreSQL.

Each admin form checks that no other version has the name (in any letter case) before it saves:
run together, both checks read the table before either save committed, both passed, and the
second save ran into the name's constraint: a server error. The second is answered as the check
answers, on the form's name field, and nothing of it is saved."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from sampler.registry.models import ModelVersion
from tests.conftest import logged_in_client as _admin
from tests.conftest import (
    model_version_admin_fields,
    racing,
    racing_then_freeing,
    recording_thread,
    served_version,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(
    ("page", "name"), [("change", "Shared"), ("change", "shared"), ("add", "SHARED")]
)
def test_a_save_racing_a_rename_to_the_same_name_is_refused_on_the_form(admin_user, page, name):
    """The second admin renames another version (or adds one) to the name, or to the name in
    another case, while the first admin's rename is under way."""
    first = served_version("first", 4096)
    second = served_version("second", 4096)
    # Logged in before the race: a login writes the user's row, which the other would wait for.
    first_admin, second_admin = _admin(admin_user), _admin(admin_user)
    url = {
        "change": reverse("admin:sampler_modelversion_change", args=[second.pk]),
        "add": reverse("admin:sampler_modelversion_add"),
    }[page]
    outcome: dict = {}

    def save_second():
        response = second_admin.post(url, model_version_admin_fields(second, name=name))
        return response.status_code, response.context["adminform"].form.errors

    saver = recording_thread(save_second, outcome, "answer")
    with racing(saver, what="the second save") as race:
        # The first rename is under way: written, not yet committed.
        answer = first_admin.post(
            reverse("admin:sampler_modelversion_change", args=[first.pk]),
            model_version_admin_fields(first, name="Shared"),
        )
        assert answer.status_code == 302

    assert race.waited, outcome
    case = "" if name == "Shared" else "; names that differ only in letter case are one"
    assert outcome == {
        "answer": (200, {"name": [f"A model version named Shared already exists{case}."]})
    }, outcome
    assert dict(ModelVersion.objects.values_list("pk", "name")) == {
        first.pk: "Shared",
        second.pk: "second",
    }
    # The losing save left no entry in the admin's history.
    assert list(LogEntry.objects.values_list("object_id", flat=True)) == [str(first.pk)]


def test_a_save_refused_once_is_not_saved_again_when_the_name_is_freed_meanwhile(admin_user):
    """The refused save is answered with the form, not saved a second time: the name's holder
    renamed away before the page answers (a third admin), the name is refused all the same,
    nothing written. (Saving again, it could as well have been refused again by a fourth
    admin's save under way: a server error.)"""
    first = served_version("first", 4096)
    second = served_version("second", 4096)
    first_admin, second_admin = _admin(admin_user), _admin(admin_user)
    outcome: dict = {}

    def save_second():
        response = second_admin.post(
            reverse("admin:sampler_modelversion_change", args=[second.pk]),
            model_version_admin_fields(second, name="Shared"),
        )
        form = response.context["adminform"].form if response.status_code == 200 else None
        return response.status_code, form and form.errors

    saver = recording_thread(save_second, outcome, "answer")
    # The first admin's rename under way; the third admin renames it away once the second
    # save is refused.
    with racing_then_freeing(
        saver, ModelVersion.objects.filter(pk=first.pk), {"name": "away"}, outcome
    ):
        answer = first_admin.post(
            reverse("admin:sampler_modelversion_change", args=[first.pk]),
            model_version_admin_fields(first, name="Shared"),
        )
        assert answer.status_code == 302

    assert outcome == {
        "freed": None,
        "answer": (200, {"name": ["A model version named Shared already exists."]}),
    }, outcome
    assert dict(ModelVersion.objects.values_list("pk", "name")) == {
        first.pk: "away",
        second.pk: "second",
    }
