"""The Django admin's project pages refuse what the project services refuse."""

import pytest
from django.urls import reverse

from ranking.projects import admin
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, ProjectPolicy, project_default_id
from ranking.projects.services import project_create
from sampler.models import ModelVersion
from tests.conftest import project_admin_fields
from tests.ranking.conftest import model_version_create

pytestmark = pytest.mark.django_db


def test_the_admin_keeps_the_default_projects_slug(admin_client_):
    default = Project.objects.get(pk=project_default_id())
    data = project_admin_fields(admin_client_, default) | {"slug": "renamed"}

    page = admin_client_.post(reverse("admin:ranking_project_change", args=[default.pk]), data)

    assert page.status_code == 200
    assert "The default project keeps its slug" in page.content.decode()
    default.refresh_from_db()
    assert default.slug == DEFAULT_PROJECT_SLUG
    assert project_default_id() == default.pk


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("alternatives", "500", "K must be between 1 and 16."),
        ("pool_size", "5000", "The pool holds 0 to 1000 tasks."),
        ("sampling_params", '{"temperature": 99}', "temperature must be between"),
    ],
)
def test_the_admin_refuses_project_settings_the_services_refuse(
    admin_client_, field, value, message
):
    project = project_create(name="Safety", slug="safety")
    data = project_admin_fields(admin_client_, project) | {field: value}

    page = admin_client_.post(reverse("admin:ranking_project_change", args=[project.pk]), data)

    assert page.status_code == 200
    assert message in page.content.decode()
    project.refresh_from_db()
    assert getattr(project, field) in (None, {})


def test_the_admin_refuses_a_reward_model_or_an_unbounded_weight_as_a_projects_policy(
    admin_client_,
):
    project = project_create(name="Safety", slug="safety")
    reward = ModelVersion.objects.create(name="rm", path="rm", kind=ModelVersion.Kind.REWARD)
    policy = model_version_create("p")
    url = reverse("admin:ranking_project_change", args=[project.pk])

    for version, weight in [(reward, "1"), (policy, "1e300")]:
        page = admin_client_.post(
            url, project_admin_fields(admin_client_, project, [(version, weight)])
        )
        assert page.status_code == 200, (version, weight)
    assert not ProjectPolicy.objects.exists()
    standalone = admin_client_.post(
        reverse("admin:ranking_projectpolicy_add"),
        {"project": project.pk, "model_version": reward.pk, "weight": "1"},
    )
    assert standalone.status_code == 200
    assert not ProjectPolicy.objects.exists()
    kept = admin_client_.post(url, project_admin_fields(admin_client_, project, [(policy, "2")]))
    assert kept.status_code == 302
    assert [(p.model_version, p.weight) for p in project.policies.all()] == [(policy, 2.0)]


def test_the_admin_says_in_which_time_zone_it_reads_the_deadline(admin_client_, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    default = Project.objects.get(pk=project_default_id())
    page = admin_client_.get(reverse("admin:ranking_project_change", args=[default.pk]))
    assert "Date and time in Europe/Berlin (the server's time zone)." in page.content.decode()


def test_the_admin_refuses_a_max_new_tokens_the_projects_policy_has_no_room_for(admin_client_):
    ModelVersion.objects.create(name="short", path="short", context_length=256, is_active=True)
    project = project_create(name="Long", slug="long")
    url = reverse("admin:ranking_project_change", args=[project.pk])
    data = project_admin_fields(admin_client_, project)

    page = admin_client_.post(url, data | {"sampling_params": '{"max_new_tokens": 256}'})

    assert page.status_code == 200
    assert "ask for at most 240." in page.content.decode()
    project.refresh_from_db()
    assert project.sampling_params == {}
    fits = admin_client_.post(url, data | {"sampling_params": '{"max_new_tokens": 240}'})
    assert fits.status_code == 302
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 240}


def test_the_admin_saves_a_project_whose_limit_no_longer_fits_when_the_limit_is_not_changed(
    admin_client_,
):
    """The policy's context was corrected since the limit was saved: the project can still be
    paused there; a changed limit is checked."""
    short = ModelVersion.objects.create(
        name="short", path="short", context_length=256, is_active=True
    )
    project = project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 240})
    ModelVersion.objects.filter(pk=short.pk).update(context_length=128)
    url = reverse("admin:ranking_project_change", args=[project.pk])
    data = project_admin_fields(admin_client_, project) | {
        "sampling_params": '{"max_new_tokens": 240}'
    }

    assert admin_client_.post(url, data | {"status": "paused"}).status_code == 302
    project.refresh_from_db()
    assert project.status == "paused"
    page = admin_client_.post(url, data | {"sampling_params": '{"max_new_tokens": 200}'})
    assert page.status_code == 200 and "ask for at most 112." in page.content.decode()
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 240}


def test_the_admin_refuses_a_slug_another_project_has_in_another_case_naming_it(admin_client_):
    project_create(name="Uni", slug="uni")
    project = project_create(name="Other", slug="other")
    url = reverse("admin:ranking_project_change", args=[project.pk])

    page = admin_client_.post(url, project_admin_fields(admin_client_, project) | {"slug": "UNI"})

    assert page.status_code == 200
    body = page.content.decode()
    assert "A project with the slug &#x27;uni&#x27; already exists" in body
    assert "letter case aside" not in body  # said once, not again as the constraint's
    project.refresh_from_db()
    assert project.slug == "other"


def test_the_admin_checks_the_policies_posted_in_its_inline_against_the_projects_limit(
    admin_client_, monkeypatch
):
    """The context is checked against the policies the save leaves (the rows posted beside the
    project), as the API and the Projects pages check the versions a save names, under the
    lock every project save takes; a refusal writes nothing."""
    short = ModelVersion.objects.create(name="short", path="short", context_length=256)
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    project = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 256}, policies=[(wide, 1.0)]
    )
    url = reverse("admin:ranking_project_change", args=[project.pk])
    locks = []
    monkeypatch.setattr(
        "ranking.projects.services.sampling_context_lock", lambda: locks.append("taken")
    )
    data = project_admin_fields(admin_client_, project, [(short, "1")]) | {"description": "Kept?"}
    data |= {"sampling_params": '{"max_new_tokens": 256}'}

    page = admin_client_.post(url, data)

    assert page.status_code == 200
    assert (
        "short: max_new_tokens=256 leaves less than 16 tokens for the prompt in this model&#x27;s "
        "256-token context; ask for at most 240."
    ) in page.content.decode()
    assert locks
    project.refresh_from_db()
    assert project.description == ""
    assert [policy.model_version for policy in project.policies.all()] == [wide]

    # The saved policy removed and a wider one posted with a higher limit: checked against
    # what the save leaves, not against the policy it removes.
    (kept,) = project.policies.all()
    project.policies.update(model_version=short)
    data = project_admin_fields(admin_client_, project, [(wide, "1")])
    data |= {"policies-TOTAL_FORMS": 2, "policies-INITIAL_FORMS": 1}
    data |= {"policies-0-id": kept.pk, "policies-0-project": project.pk}
    data |= {"policies-0-model_version": short.pk, "policies-0-weight": "1"}
    data |= {"policies-0-DELETE": "on", "sampling_params": '{"max_new_tokens": 250}'}
    data |= {"policies-1-model_version": wide.pk, "policies-1-weight": "1"}
    locks.clear()

    saved = admin_client_.post(url, data)

    assert saved.status_code == 302
    assert locks
    project.refresh_from_db()
    assert project.sampling_params == {"max_new_tokens": 250}
    assert [policy.model_version for policy in project.policies.all()] == [wide]

    # A new project is checked against the policies posted with it.
    added = project_admin_fields(admin_client_, project, [(short, "1")])
    added |= {"name": "New", "slug": "new", "sampling_params": '{"max_new_tokens": 250}'}
    refused = admin_client_.post(reverse("admin:ranking_project_add"), added)
    assert refused.status_code == 200
    assert "short: max_new_tokens=250 leaves less than 16 tokens" in refused.content.decode()
    assert not Project.objects.filter(slug="new").exists()


def test_the_admins_policy_page_checks_the_projects_limit_against_the_policies_it_leaves(
    admin_client_, monkeypatch
):
    """A policy added on its own page, or moved there to another project, is checked as the
    project's inline checks it: against the policies each project it changes is left with."""
    ModelVersion.objects.create(name="short", path="short", context_length=256, is_active=True)
    short = ModelVersion.objects.get(name="short")
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    own = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 256}, policies=[(wide, 1.0)]
    )
    other = project_create(name="Other", slug="other")
    locks = []
    monkeypatch.setattr(
        "ranking.projects.services.sampling_context_lock", lambda: locks.append("taken")
    )

    added = admin_client_.post(
        reverse("admin:ranking_projectpolicy_add"),
        {"project": own.pk, "model_version": short.pk, "weight": "1"},
    )

    assert added.status_code == 200
    assert "short: max_new_tokens=256 leaves less than 16 tokens" in added.content.decode()
    assert locks
    assert [policy.model_version for policy in own.policies.all()] == [wide]

    # Moved to another project, it leaves its own to the active policy, which has no room.
    (policy,) = own.policies.all()
    moved = admin_client_.post(
        reverse("admin:ranking_projectpolicy_change", args=[policy.pk]),
        {"project": other.pk, "model_version": wide.pk, "weight": "1"},
    )

    assert moved.status_code == 200
    assert "short: max_new_tokens=256 leaves less than 16 tokens" in moved.content.decode()
    policy.refresh_from_db()
    assert policy.project == own
    reweighed = admin_client_.post(
        reverse("admin:ranking_projectpolicy_change", args=[policy.pk]),
        {"project": own.pk, "model_version": wide.pk, "weight": "2"},
    )
    assert reweighed.status_code == 302
    policy.refresh_from_db()
    assert policy.weight == 2.0


def test_deleting_a_policy_in_the_admin_is_checked_against_the_projects_limit(admin_client_):
    """Its delete page and "Delete selected" deleted a project's last policy, leaving it on the
    active policy, which has no room for its max_new_tokens; both refuse it, nothing deleted."""
    ModelVersion.objects.create(name="short", path="short", context_length=256, is_active=True)
    wide = ModelVersion.objects.create(name="wide", path="wide", context_length=4096)
    spare = ModelVersion.objects.create(name="spare", path="spare", context_length=4096)
    own = project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 256}, policies=[(wide, 1.0)]
    )
    (policy,) = own.policies.all()
    refusal = "Not deleted: short: max_new_tokens=256 leaves less than 16 tokens"

    page = admin_client_.post(
        reverse("admin:ranking_projectpolicy_delete", args=[policy.pk]), {"post": "yes"},
        follow=True,
    )  # fmt: skip
    assert refusal in page.content.decode()
    bulk = {"action": "delete_selected", "_selected_action": [policy.pk], "post": "yes"}
    listed = admin_client_.post(
        reverse("admin:ranking_projectpolicy_changelist"), bulk, follow=True
    )
    assert refusal in listed.content.decode()
    assert list(own.policies.all()) == [policy]

    # With another policy of room left, both delete as before.
    ProjectPolicy.objects.create(project=own, model_version=spare, weight=1.0)
    admin_client_.post(reverse("admin:ranking_projectpolicy_changelist"), bulk)
    assert [kept.model_version for kept in own.policies.all()] == [spare]


def test_the_policy_delete_page_answers_an_id_that_is_no_policy_as_the_admin_does(admin_client_):
    """The delete page's check read the id itself: one that is no number was a 500."""
    for object_id in ("abc", "999999"):
        page = admin_client_.get(
            reverse("admin:ranking_projectpolicy_delete", args=[object_id]), follow=True
        )
        assert page.status_code == 200
        assert "doesn\u2019t exist" in page.content.decode()  # the admin's own words


def test_the_admin_keeps_a_pool_error_a_fill_wrote_while_the_save_was_under_way(
    admin_client_, monkeypatch
):
    """The row the save read at the start of the request, then a fill's ``pool_error``
    written (as ``_pool_error_record`` does) while the form is checked: the save writes the
    form's fields only, and the fill's sentence stays."""
    project = project_create(name="Filled", slug="filled")
    data = project_admin_fields(admin_client_, project) | {"description": "Edited."}
    checked = admin.project_setting_errors

    def fill_fails_meanwhile(**kwargs) -> dict:
        Project.objects.filter(pk=project.pk).update(pool_error="The fill failed.")
        return checked(**kwargs)

    monkeypatch.setattr(admin, "project_setting_errors", fill_fails_meanwhile)

    page = admin_client_.post(reverse("admin:ranking_project_change", args=[project.pk]), data)

    assert page.status_code == 302
    project.refresh_from_db()
    assert (project.description, project.pool_error) == ("Edited.", "The fill failed.")
