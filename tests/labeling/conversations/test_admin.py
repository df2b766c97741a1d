"""The admin's JSONL upload of conversations (the import itself: test_importing)."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from labeling.conversations import admin as conversations_admin
from labeling.conversations.models import Conversation
from tests.labeling.conversations.conftest import GOOD_PLAIN, MIXED_FILE, jsonl

IMPORT_URL = "/admin/labeling/conversation/import/"


def test_changelist_links_to_the_import_page(admin_client_):
    response = admin_client_.get("/admin/labeling/conversation/")
    assert response.status_code == 200
    assert IMPORT_URL.encode() in response.content


def test_admin_upload_imports_and_reports_errors_by_line(admin_client_, admin_user, trainer):
    form = admin_client_.get(IMPORT_URL)
    assert form.status_code == 200
    assert form.context["form"].initial["owner"] == admin_user.pk

    upload = SimpleUploadedFile("chats.jsonl", MIXED_FILE, content_type="application/jsonl")
    response = admin_client_.post(
        IMPORT_URL, {"file": upload, "owner": trainer.pk, "title_prefix": ""}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/admin/labeling/conversation/"
    texts = [str(message) for message in response.context["messages"]]
    assert texts[0] == "Imported 2 conversations."
    assert [text.split(":")[0] for text in texts[1:]] == ["line 2", "line 3", "line 5"]
    assert Conversation.objects.filter(owner=trainer, source="imported").count() == 2


def test_admin_upload_over_the_size_limit_is_refused(admin_client_, admin_user, monkeypatch):
    monkeypatch.setattr(conversations_admin, "MAX_UPLOAD_BYTES", 100)
    upload = SimpleUploadedFile("chats.jsonl", jsonl(GOOD_PLAIN, GOOD_PLAIN))
    response = admin_client_.post(IMPORT_URL, {"file": upload, "owner": admin_user.pk})
    assert response.status_code == 200
    assert "larger than" in str(response.context["form"].errors["file"])
    assert not Conversation.objects.exists()


def test_admin_upload_without_a_file_shows_the_form_again(admin_client_, admin_user):
    response = admin_client_.post(IMPORT_URL, {"owner": admin_user.pk})
    assert response.status_code == 200
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
