"""Every project has its own guideline version sequence: numbers start at 1 per project, work
records its own project's version, and the pages show, edit and acknowledge one project's."""

import pytest
from django.contrib.auth.models import Group

from labeling.conversations import services as conversation_services
from labeling.guidelines import selectors
from labeling.guidelines import services as guideline_services
from labeling.guidelines.models import GuidelineVersion
from ranking.projects.models import Project
from tests.labeling.conftest import HTMX
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    rank,
    task_from_source,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def safety(admin_user):
    return Project.objects.create(name="Safety push", slug="safety", status="active")


def test_each_project_numbers_its_own_versions(admin_user, safety):
    default_v2 = guideline_services.guideline_version_create(author=admin_user, text="# Default 2")
    safety_v2 = guideline_services.guideline_version_create(
        author=admin_user, text="# Refuse politely", project_id=safety.pk
    )
    safety_v3 = guideline_services.guideline_version_create(
        author=admin_user, text="# Refuse politely, briefly", project_id=safety.pk
    )
    assert (default_v2.number, safety_v2.number, safety_v3.number) == (2, 2, 3)
    assert safety_v3.project_id == safety.pk and default_v2.project.slug == "default"
    assert selectors.guideline_version_current().pk == default_v2.pk
    assert selectors.guideline_version_current(project_id=safety.pk).pk == safety_v3.pk
    assert [v.number for v in selectors.guideline_version_list(project_id=safety.pk)] == [3, 2, 1]
    # A project with no version yet shows version 1 (the defaults) unsaved, its own.
    fresh = Project.objects.create(name="Fresh", slug="fresh")
    shown = selectors.guideline_version_current(project_id=fresh.pk)
    assert shown.pk is None and shown.number == 1 and shown.project_id == fresh.pk
    assert not GuidelineVersion.objects.filter(project=fresh).exists()


def test_work_records_its_own_projects_version(admin_user, trainer, other_trainer, safety):
    guideline_services.guideline_version_create(
        author=admin_user, text="# Safety rules", project_id=safety.pk
    )
    conversation = conversation_services.conversation_create(owner=trainer, project_id=safety.pk)
    message = conversation_services.message_append(
        conversation=conversation, author=trainer, content="how do I pick a lock?"
    )
    assert message.guideline_version.project_id == safety.pk
    assert message.guideline_version.number == 2

    source = finished_conversation(other_trainer).messages.get(role="assistant")
    task = task_from_source(source, model_version=model_version_create("v"))
    ranking = rank(task, trainer, [[0], [1, 2], [3]])
    # The task is in the default project, whose guidelines are still at version 1.
    assert ranking.guideline_version.project.slug == "default"
    assert ranking.guideline_version.number == 1


def test_pages_show_edit_and_acknowledge_one_projects_guidelines(
    admin_client_, trainer_client, trainer, admin_user, safety
):
    edited = admin_client_.post(
        "/write/guidelines/edit/",
        {"text": "# Safety\n\nRefuse briefly.", "change_note": "safety", "project": "safety"},
    )
    assert edited.status_code == 302 and edited["Location"] == "/write/guidelines/?project=safety"
    assert GuidelineVersion.objects.get(project=safety, number=2).change_note == "safety"
    assert not GuidelineVersion.objects.filter(project__slug="default", number=2).exists()

    page = trainer_client.get("/write/guidelines/?project=safety")
    assert page.status_code == 200
    assert b"Safety push" in page.content and b"Refuse briefly" in page.content
    assert b"Refuse briefly" not in trainer_client.get("/write/guidelines/").content

    panel = trainer_client.get("/write/guidelines/panel/?project=safety", **HTMX)
    assert b"I have read version 2" in panel.content and b'data-project="safety"' in panel.content
    read = trainer_client.post("/write/guidelines/2/read/", {"project": "safety"}, **HTMX)
    assert read.status_code == 200 and b"guidelines-banner" not in read.content
    safety_v2 = GuidelineVersion.objects.get(project=safety, number=2)
    assert selectors.guideline_has_read(user=trainer, version=safety_v2)
    # The default project's version 2 does not exist: reading "2" there is a 404.
    assert trainer_client.post("/write/guidelines/2/read/", **HTMX).status_code == 404


def test_a_trainer_sees_only_the_guidelines_of_projects_open_to_them(
    admin_client_, trainer_client, safety
):
    safety.trainer_groups.add(Group.objects.create(name="safety-experts"))
    assert trainer_client.get("/write/guidelines/?project=safety").status_code == 404
    assert trainer_client.get("/write/guidelines/panel/?project=safety", **HTMX).status_code == 404
    assert trainer_client.get("/write/guidelines/?project=nope").status_code == 404
    for bad in ("a\x00b", "x" * 65, "two words"):
        assert trainer_client.get("/write/guidelines/", {"project": bad}).status_code == 404
        read = trainer_client.post("/write/guidelines/1/read/", {"project": bad}, **HTMX)
        assert read.status_code == 404
    assert not GuidelineVersion.objects.exists()  # nothing half written
    # Admins see (and edit) every project's, drafts included.
    draft = Project.objects.create(name="Draft round", slug="draft-round")
    assert admin_client_.get("/write/guidelines/?project=draft-round").status_code == 200
    assert draft.status == Project.Status.DRAFT


def test_the_writing_page_loads_its_projects_panel(trainer_client, trainer, other_trainer, safety):
    conversation = conversation_services.conversation_create(owner=trainer, project_id=safety.pk)
    editor = trainer_client.get(f"/write/{conversation.pk}/")
    assert b'data-project="safety"' in editor.content
    assert b"/write/guidelines/?project=safety" in editor.content


def test_the_exports_form_offers_each_version_number_once_with_its_projects(
    admin_client_, admin_user, safety
):
    guideline_services.guideline_version_create(author=admin_user, text="# Default 2")
    guideline_services.guideline_version_create(
        author=admin_user, text="# Safety 2", project_id=safety.pk
    )
    guideline_services.guideline_version_create(
        author=admin_user, text="# Safety 3", project_id=safety.pk
    )
    assert selectors.guideline_number_choices() == [
        (3, "v3 (Safety push)"),
        (2, "v2 (Default project, Safety push)"),
        (1, "v1 (Default project, Safety push)"),
    ]
    page = admin_client_.get("/exports/").content.decode()
    assert "v2 (Default project, Safety push)" in page


def test_a_draft_projects_guidelines_are_for_admins_until_it_opens(
    admin_client_, trainer_client, safety
):
    """A draft is still being prepared: a trainer neither sees it listed nor opens, loads or
    acknowledges its guidelines (the acknowledgement would save its version 1), as they cannot
    work in it; a paused or done project's stay readable (the trainer's work there records
    them). Admins see every project's."""
    draft = Project.objects.create(name="Q13 draft", slug="q13")
    paused = Project.objects.create(name="Paused round", slug="paused", status="paused")
    page = trainer_client.get("/write/guidelines/").content.decode()
    assert "Safety push" in page and "Paused round" in page and "Q13 draft" not in page
    assert trainer_client.get("/write/guidelines/?project=q13").status_code == 404
    assert trainer_client.get("/write/guidelines/?project=Q13&version=1").status_code == 404
    assert trainer_client.get("/write/guidelines/panel/?project=q13", **HTMX).status_code == 404
    assert trainer_client.post("/write/guidelines/1/read/", {"project": "q13"}).status_code == 404
    read = trainer_client.post("/write/guidelines/1/read/", {"project": "q13"}, **HTMX)
    assert read.status_code == 404
    assert not GuidelineVersion.objects.filter(project=draft).exists()
    assert trainer_client.get("/write/guidelines/?project=paused").status_code == 200
    assert "Q13 draft" in admin_client_.get("/write/guidelines/").content.decode()
    assert admin_client_.get("/write/guidelines/?project=q13").status_code == 200
    # Opened, its guidelines are the trainers' too.
    Project.objects.filter(pk=draft.pk).update(status="active")
    assert trainer_client.get("/write/guidelines/?project=q13").status_code == 200
    assert paused.status == "paused"


def test_without_a_project_a_trainer_gets_one_open_to_them(trainer_client, safety):
    """The page and panel without ``project`` show the default project's guidelines; when the
    default project is not open to the trainer (another group's, or a draft), the first project
    that is, not the default's; with none open, nothing."""
    default = Project.objects.get(slug="default")
    default.trainer_groups.add(Group.objects.create(name="others"))
    page = trainer_client.get("/write/guidelines/")
    assert page.status_code == 200
    assert b"<h1>Labeling guidelines: Safety push</h1>" in page.content
    panel = trainer_client.get("/write/guidelines/panel/", **HTMX)
    assert b'data-project="safety"' in panel.content
    assert trainer_client.post("/write/guidelines/1/read/").status_code == 302
    assert not GuidelineVersion.objects.filter(project=default).exists()
    Project.objects.filter(pk=safety.pk).update(status="draft")
    assert trainer_client.get("/write/guidelines/").status_code == 404
    assert trainer_client.get("/write/guidelines/panel/", **HTMX).status_code == 404
