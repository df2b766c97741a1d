"""The admin's JSONL upload of conversations (the import itself: test_importing)."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from config.text import LINE_MESSAGE
from labeling.conversations import admin as conversations_admin
from labeling.conversations.models import Conversation
from ranking.projects.models import Project, project_default_id
from ranking.projects.services import project_create
from tests.labeling.conversations.conftest import GOOD_PLAIN, GOOD_WITH_SYSTEM, MIXED_FILE, jsonl

IMPORT_URL = "/admin/labeling/conversation/import/"


def test_changelist_links_to_the_import_page(admin_client_):
    response = admin_client_.get("/admin/labeling/conversation/")
    assert response.status_code == 200
    assert IMPORT_URL.encode() in response.content


def test_admin_upload_of_a_clean_file_imports_it(admin_client_, admin_user, trainer):
    form = admin_client_.get(IMPORT_URL)
    assert form.status_code == 200
    assert form.context["form"].initial["owner"] == admin_user.pk

    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "title_prefix": ""}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/admin/labeling/conversation/"
    texts = [str(message) for message in response.context["messages"]]
    assert texts == ["Imported 2 conversations."]
    assert Conversation.objects.filter(owner=trainer, source="imported").count() == 2


def test_admin_upload_with_bad_lines_imports_nothing_and_shows_each_line(admin_client_, trainer):
    upload = SimpleUploadedFile("chats.jsonl", MIXED_FILE, content_type="application/jsonl")
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "title_prefix": ""}
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "3 invalid lines" in page and "nothing was imported" in page
    for line_number in (2, 3, 5):
        assert f"<li>line {line_number}: " in page
    assert "role must be one of user, assistant, system (got &#x27;bot&#x27;)" in page
    assert not Conversation.objects.exists()


def test_admin_upload_into_a_closed_default_project_imports_nothing_and_says_why(
    admin_client_, trainer
):
    Project.objects.filter(pk=project_default_id()).update(status=Project.Status.PAUSED)
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    response = admin_client_.post(IMPORT_URL, {"file": upload, "owner": trainer.pk})
    assert response.status_code == 422
    assert response.context["form"].errors["project"] == [
        "No active project 'default' is open to you."
    ]
    assert not Conversation.objects.exists()


def test_admin_upload_into_a_closed_project_other_than_the_default_imports_nothing(
    admin_client_, trainer
):
    closed = project_create(name="Closed", slug="closed", status=Project.Status.DONE)
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "project": closed.slug}
    )
    assert response.status_code == 422
    assert response.context["form"].errors["project"] == [
        "No active project 'closed' is open to you."
    ]
    assert not Conversation.objects.exists()


def test_admin_upload_with_a_list_where_a_role_belongs_shows_the_line(admin_client_, trainer):
    bad = {
        "messages": [{"role": ["user"], "content": "Hi"}, {"role": "assistant", "content": "Yo"}]
    }
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN, bad))
    response = admin_client_.post(IMPORT_URL, {"file": upload, "owner": trainer.pk})
    assert response.status_code == 422
    assert "<li>line 2: messages[0]: role must be one of" in response.content.decode()
    assert not Conversation.objects.exists()


def test_admin_upload_over_the_size_limit_is_refused(admin_client_, admin_user, monkeypatch):
    monkeypatch.setattr(conversations_admin, "MAX_UPLOAD_BYTES", 100)
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN, GOOD_PLAIN))
    response = admin_client_.post(IMPORT_URL, {"file": upload, "owner": admin_user.pk})
    assert response.status_code == 422
    assert "larger than" in str(response.context["form"].errors["file"])
    assert not Conversation.objects.exists()


def test_admin_upload_without_a_file_shows_the_form_again(admin_client_, admin_user):
    response = admin_client_.post(IMPORT_URL, {"owner": admin_user.pk})
    assert response.status_code == 422
    assert "Choose a JSONL file." in str(response.context["form"].errors["file"])


def test_trainer_cannot_use_the_admin_upload(trainer_client, trainer):
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN))
    response = trainer_client.post(IMPORT_URL, {"file": upload, "owner": trainer.pk})
    assert response.status_code in {302, 403}
    if response.status_code == 302:
        assert response.url.startswith("/admin/login/")
    assert trainer_client.get(IMPORT_URL).status_code in {302, 403}
    assert not Conversation.objects.exists()


def test_admin_upload_still_checks_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN))
    response = client.post(IMPORT_URL, {"file": upload, "owner": admin_user.pk})
    assert response.status_code == 403
    assert not Conversation.objects.exists()


def test_admin_upload_of_a_gzipped_file_imports_it_and_a_cut_one_imports_nothing(
    admin_client_, trainer, monkeypatch
):
    import gzip

    packed = gzip.compress(jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    upload = SimpleUploadedFile("chats.jsonl.gz", packed)
    response = admin_client_.post(IMPORT_URL, {"file": upload, "owner": trainer.pk}, follow=True)
    assert [str(m) for m in response.context["messages"]] == ["Imported 2 conversations."]
    cut = SimpleUploadedFile("chats.jsonl.gz", packed[: len(packed) // 2])
    response = admin_client_.post(IMPORT_URL, {"file": cut, "owner": trainer.pk})
    assert response.status_code == 422
    assert "Reading the file failed part way" in response.content.decode()
    # What a small .gz holds once decompressed is bounded like a plain upload.
    monkeypatch.setattr(conversations_admin, "MAX_UPLOAD_BYTES", 500)
    big = SimpleUploadedFile("chats.jsonl.gz", gzip.compress(jsonl(*[GOOD_PLAIN] * 20)))
    response = admin_client_.post(IMPORT_URL, {"file": big, "owner": trainer.pk})
    assert response.status_code == 422 and "once decompressed" in response.content.decode()
    assert Conversation.objects.count() == 2


def test_admin_upload_goes_to_the_project_chosen_or_the_default_one(admin_client_, trainer):
    safety = project_create(name="Safety", slug="safety", status="active")
    form = admin_client_.get(IMPORT_URL).content.decode()
    assert '<option value="safety">Safety</option>' in form

    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN))
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "project": "safety"}
    )
    assert response.status_code == 302
    assert list(Conversation.objects.values_list("project_id", flat=True)) == [safety.pk] * 2

    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN))
    admin_client_.post(IMPORT_URL, {"file": upload, "owner": trainer.pk, "project": ""})
    assert Conversation.objects.filter(project_id=project_default_id()).count() == 1

    # A project that does not exist is the form's error: nothing is imported.
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN))
    refused = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "project": "gone"}
    )
    assert refused.status_code == 422 and "project" in refused.context["form"].errors
    assert Conversation.objects.count() == 3


def test_admin_upload_refuses_a_title_prefix_of_more_than_one_line(admin_client_, trainer):
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN))
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "title_prefix": "batch\u2028one"}
    )
    assert response.status_code == 422
    assert response.context["form"].errors == {"title_prefix": [LINE_MESSAGE]}
    assert not Conversation.objects.exists()


def test_admin_upload_of_a_file_again_skips_what_is_imported_and_says_how_many(
    admin_client_, trainer
):
    file = jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN)
    admin_client_.post(
        IMPORT_URL, {"file": SimpleUploadedFile("chats.jsonl", file), "owner": trainer.pk}
    )
    form = admin_client_.get(IMPORT_URL).content.decode()
    assert 'name="allow_duplicates"' in form

    again = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_WITH_SYSTEM, GOOD_PLAIN, GOOD_PLAIN))
    response = admin_client_.post(IMPORT_URL, {"file": again, "owner": trainer.pk}, follow=True)

    assert [str(m) for m in response.context["messages"]] == [
        "Imported 0 conversations; 3 already imported, skipped (their turns are in the project "
        "or on an earlier line)."
    ]
    assert Conversation.objects.count() == 2


def test_admin_upload_allowing_duplicates_imports_every_line(admin_client_, trainer):
    file = jsonl(GOOD_PLAIN, GOOD_PLAIN)
    first = admin_client_.post(
        IMPORT_URL,
        {"file": SimpleUploadedFile("chats.jsonl", file), "owner": trainer.pk},
        follow=True,
    )
    assert [str(m) for m in first.context["messages"]] == [
        "Imported 1 conversation; 1 already imported, skipped (their turns are in the project "
        "or on an earlier line)."
    ]
    response = admin_client_.post(
        IMPORT_URL,
        {
            "file": SimpleUploadedFile("chats.jsonl", file),
            "owner": trainer.pk,
            "allow_duplicates": "on",
        },
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == ["Imported 2 conversations."]
    assert Conversation.objects.count() == 3


@pytest.mark.parametrize("value", ["false", "0", "abc", ""])
def test_admin_upload_with_allow_duplicates_other_than_the_boxs_value_is_refused(
    admin_client_, trainer, value
):
    response = admin_client_.post(
        IMPORT_URL,
        {
            "file": SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN)),
            "owner": trainer.pk,
            "allow_duplicates": value,
        },
    )
    assert response.status_code == 422
    assert response.context["form"].errors == {
        "allow_duplicates": ["Allow duplicates is a checkbox: tick it or leave it unticked."]
    }
    assert 'name="allow_duplicates" value="on"' in response.content.decode()
    assert not Conversation.objects.exists()


# ---- a conversation's and a draft's references to messages ----------------------------------


def _change_form_data(response) -> dict:
    """What the admin's change page posts back as it is shown (its form's and inline's values)."""
    form = response.context["adminform"].form
    data = {
        name: ("" if value is None else value)
        for name, value in ((name, form[name].value()) for name in form.fields)
    }
    data.update({"messages-TOTAL_FORMS": 0, "messages-INITIAL_FORMS": 0})
    return data


def test_the_admin_cannot_finish_a_conversation_or_point_it_at_another_ones_message(
    admin_client_, trainer, other_trainer, conversation
):
    from labeling.conversations.services import conversation_create
    from tests.labeling.conftest import write_turns

    other = conversation_create(owner=other_trainer, title="Elsewhere")
    (elsewhere,) = write_turns(other, other_trainer, "not yours")
    url = f"/admin/labeling/conversation/{conversation.pk}/change/"
    page = admin_client_.get(url)
    assert page.status_code == 200
    # Finishing, discarding and reopening are the app's (its checks: a user and an assistant
    # turn to finish); the branch shown is moved by switching branches there.
    assert {"status", "active_leaf", "finished_at"}.isdisjoint(
        page.context["adminform"].form.fields
    )

    data = _change_form_data(page)
    data.update(status="finished", active_leaf=elsewhere.pk, title="Renamed")
    response = admin_client_.post(url, data)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert conversation.title == "Renamed"
    assert conversation.status == Conversation.Status.DRAFT
    assert conversation.active_leaf_id is None
    assert conversation.finished_at is None


def test_the_admin_refuses_a_draft_editing_another_conversations_message(
    admin_client_, trainer, other_trainer, conversation
):
    from labeling.conversations.models import Draft
    from labeling.conversations.services import conversation_create
    from tests.labeling.conftest import write_turns

    (own,) = write_turns(conversation, trainer, "mine")
    other = conversation_create(owner=other_trainer, title="Elsewhere")
    (elsewhere,) = write_turns(other, other_trainer, "not yours")
    data = {"conversation": conversation.pk, "author": trainer.pk, "content": "typed"}

    response = admin_client_.post("/admin/labeling/draft/add/", {**data, "editing": elsewhere.pk})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["editing"] == [
        "That message belongs to another conversation."
    ]
    assert not Draft.objects.exists()

    response = admin_client_.post("/admin/labeling/draft/add/", {**data, "editing": own.pk})
    assert response.status_code == 302
    assert Draft.objects.get().editing == own


def test_the_admin_refuses_a_side_for_an_edits_draft(admin_client_, trainer, conversation):
    from labeling.conversations.models import Draft
    from tests.labeling.conftest import write_turns

    (own,) = write_turns(conversation, trainer, "mine")
    data = {"conversation": conversation.pk, "author": trainer.pk, "content": "typed"}
    response = admin_client_.post(
        "/admin/labeling/draft/add/", {**data, "editing": own.pk, "role": "user"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["role"] == [
        "An edit's draft is the edited turn's side: it takes none."
    ]
    assert not Draft.objects.exists()

    response = admin_client_.post("/admin/labeling/draft/add/", {**data, "role": "user"})
    assert response.status_code == 302
    assert Draft.objects.get().role == "user"
