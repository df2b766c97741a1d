"""The accounts' admin pages: Idempotency-Keys are listed and shown, never changed."""

from django.urls import reverse

from accounts.models import IdempotencyKey
from tests.conftest import post_json

CHANGELIST = "admin:accounts_idempotencykey_changelist"


def _keys(trainer_client, other_trainer_client) -> None:
    post_json(trainer_client, "/api/conversations/", {"title": "Mine"}, idempotency_key="key-a")
    post_json(
        other_trainer_client, "/api/conversations/", {"title": "Theirs"}, idempotency_key="key-b"
    )


def test_the_idempotency_keys_are_listed_and_found_by_key_or_user(
    admin_client_, trainer_client, trainer, other_trainer, client
):
    client.force_login(other_trainer)
    _keys(trainer_client, client)
    url = reverse(CHANGELIST)

    listed = admin_client_.get(url).content.decode()
    by_key = admin_client_.get(url, {"q": "key-b"}).content.decode()
    by_user = admin_client_.get(url, {"q": trainer.username}).content.decode()

    for column in ("User", "Key", "Method", "Path", "Status code", "Created at"):
        assert column in listed
    assert "key-a" in listed and "key-b" in listed and "/api/conversations/" in listed
    assert "key-b" in by_key and "key-a" not in by_key
    assert "key-a" in by_user and "key-b" not in by_user


def test_an_idempotency_key_is_shown_and_never_added_changed_nor_deleted_in_the_admin(
    admin_client_, trainer_client
):
    post_json(trainer_client, "/api/conversations/", {"title": "Mine"}, idempotency_key="key-a")
    stored = IdempotencyKey.objects.get()
    change = reverse("admin:accounts_idempotencykey_change", args=[stored.pk])

    assert admin_client_.get(change).status_code == 200
    assert admin_client_.post(change, {"key": "other", "status_code": 500}).status_code == 403
    assert admin_client_.get(reverse("admin:accounts_idempotencykey_add")).status_code == 403
    delete = reverse("admin:accounts_idempotencykey_delete", args=[stored.pk])
    assert admin_client_.post(delete, {"post": "yes"}).status_code == 403
    stored.refresh_from_db()
    assert (stored.key, stored.status_code) == ("key-a", 201)
