"""Text sent in a form's body or an address's query that is not UTF-8 is refused in words,
nothing written, instead of being stored with its bytes replaced by U+FFFD."""

import pytest
from django.test import Client
from django.urls import reverse

from labeling.conversations.models import Conversation
from tests.labeling.conversations.conftest import GOOD_PLAIN, jsonl

pytestmark = pytest.mark.django_db
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize("body", [b"title=caf%E9", b"title=caf\xe9", b"title=%ED%A0%80"])
def test_a_form_whose_text_is_not_utf8_is_refused_and_nothing_is_written(trainer_client, body):
    response = trainer_client.post(reverse("labeling:conversation-create"), body, content_type=FORM)
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
    assert not Conversation.objects.exists()


def test_utf8_form_text_and_a_real_replacement_character_are_kept(trainer_client):
    body = b"title=caf%C3%A9+%EF%BF%BD&x=a%26b"
    response = trainer_client.post(reverse("labeling:conversation-create"), body, content_type=FORM)
    assert response.status_code == 302
    assert Conversation.objects.get().title == "café \ufffd"


def test_a_page_address_whose_query_is_not_utf8_is_a_400_page(trainer_client):
    response = trainer_client.get(reverse("labeling:conversation-list") + "?status=dr%FFaft")
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()


def test_an_api_query_that_is_not_utf8_is_a_json_400(trainer_client):
    response = trainer_client.get("/api/conversations/?status=%FF")
    assert response.status_code == 400
    assert "not UTF-8" in response.json()["detail"]


def test_the_refusal_page_leads_back_to_the_page_the_form_was_on(trainer_client):
    page = reverse("labeling:conversation-list")
    response = trainer_client.post(
        reverse("labeling:conversation-create"),
        b"title=%FF",
        content_type=FORM,
        HTTP_REFERER=f"http://testserver{page}",
    )
    assert response.status_code == 400
    assert f'href="http://testserver{page}"' in response.content.decode()
    elsewhere = trainer_client.post(
        reverse("labeling:conversation-create"),
        b"title=%FF",
        content_type=FORM,
        HTTP_REFERER="https://elsewhere.example/",
    )
    assert 'href="/"' in elsewhere.content.decode()


# ---- multipart bodies (forms with a file) ------------------------------------------------------

BOUNDARY = "TeXtBoUnDaRy"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def _multipart(fields: dict[str, bytes], files: dict[str, bytes] | None = None) -> bytes:
    """A multipart body of ``fields``, their bytes as given, and ``files``."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value
        for name, value in fields.items()
    ]
    parts += [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.jsonl"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        + content
        for name, content in (files or {}).items()
    ]
    return b"\r\n".join([*parts, f"--{BOUNDARY}--\r\n".encode()])


@pytest.mark.parametrize("title", [b"caf\xe9", b"\xed\xa0\x80"])
def test_a_multipart_form_whose_text_is_not_utf8_is_refused_and_nothing_is_written(
    trainer_client, title
):
    page = reverse("labeling:conversation-list")
    response = trainer_client.post(
        reverse("labeling:conversation-create"),
        _multipart({"title": title}),
        content_type=MULTIPART,
        HTTP_REFERER=f"http://testserver{page}",
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "not UTF-8" in body and f'href="http://testserver{page}"' in body
    assert not Conversation.objects.exists()


def test_utf8_multipart_text_and_a_real_replacement_character_are_kept(trainer_client):
    response = trainer_client.post(
        reverse("labeling:conversation-create"),
        _multipart({"title": "café \ufffd".encode()}),
        content_type=MULTIPART,
    )
    assert response.status_code == 302
    assert Conversation.objects.get().title == "café \ufffd"


def test_the_admin_import_refuses_a_title_prefix_that_is_not_utf8_and_imports_nothing(
    admin_client_, trainer
):
    fields = {"owner": str(trainer.pk).encode(), "title_prefix": b"Batch \xff "}
    response = admin_client_.post(
        "/admin/labeling/conversation/import/",
        _multipart(fields, {"file": jsonl(GOOD_PLAIN)}),
        content_type=MULTIPART,
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
    assert not Conversation.objects.exists()


def test_the_admin_import_takes_utf8_text_beside_its_file_and_leaves_the_file_to_its_reader(
    admin_client_, trainer
):
    url = "/admin/labeling/conversation/import/"
    fields = {"owner": str(trainer.pk).encode(), "title_prefix": "Lot é ".encode()}
    response = admin_client_.post(
        url, _multipart(fields, {"file": jsonl(GOOD_PLAIN)}), content_type=MULTIPART
    )
    assert response.status_code == 302
    assert Conversation.objects.get().title.startswith("Lot é")
    # A file's bytes are not the form's text: its reader says what is wrong with them.
    response = admin_client_.post(
        url, _multipart(fields, {"file": b'{"title": "caf\xe9"}\n'}), content_type=MULTIPART
    )
    assert response.status_code == 422
    assert "line 1: not valid UTF-8 (byte 15)" in response.content.decode()
    assert Conversation.objects.count() == 1


def test_multipart_text_that_is_not_utf8_is_refused_where_the_csrf_check_reads_it(trainer):
    """The CSRF check reads a form's token from its body, before the view: the body's text is
    refused there alike."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(trainer)
    client.get(reverse("labeling:conversation-list"))
    token = client.cookies["csrftoken"].value
    body = _multipart({"csrfmiddlewaretoken": token.encode(), "title": b"caf\xe9"})
    response = client.post(reverse("labeling:conversation-create"), body, content_type=MULTIPART)
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
    assert not Conversation.objects.exists()


@pytest.mark.parametrize("charset", ["us-ascii", "utf-16", "tandem_strict_utf_8"])
def test_a_multipart_form_declaring_another_charset_is_refused_and_nothing_is_written(
    trainer_client, charset
):
    """Django's parser would decode such a body with U+FFFD in place of what the charset cannot
    read (us-ascii: every accented letter), or fail on one (the strict codec of this project,
    named as a charset: was a 500)."""
    response = trainer_client.generic(  # .post would re-encode the body in that charset
        "POST",
        reverse("labeling:conversation-create"),
        _multipart({"title": "café".encode()}),
        content_type=f"{MULTIPART}; charset={charset}",
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
    assert not Conversation.objects.exists()


def test_a_login_form_naming_the_strict_codec_as_its_charset_is_a_400(db):
    """Signed out, with a token of the client's own making: refused in words, not a 500."""
    client = Client(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = "a" * 32
    response = client.generic(
        "POST",
        "/accounts/login/",
        _multipart({"csrfmiddlewaretoken": b"a" * 32, "x": b"\xff"}),
        content_type=f"{MULTIPART}; charset=tandem_strict_utf_8",
    )
    assert response.status_code == 400
    assert "not UTF-8" in response.content.decode()
