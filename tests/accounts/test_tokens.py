"""API tokens: made, listed and revoked on the account page and with `manage.py api_token`,
stored as a hash, accepted as `Authorization: Bearer` (or `Token`) on the API."""

import hashlib
import json
import re
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.models import ApiToken
from config.text import LINE_MESSAGE

API_URL = "/api/conversations/"


def _bearer(secret: str, keyword: str = "Bearer") -> Client:
    return Client(HTTP_AUTHORIZATION=f"{keyword} {secret}")


def test_a_token_made_on_the_account_page_is_shown_once_and_stored_only_as_a_hash(
    trainer_client, trainer
):
    response = trainer_client.post(reverse("accounts:token-create"), {"name": "my script"})
    # Post/redirect/get: reloading the page that shows the token does not post again.
    assert response.status_code == 302 and response.url == reverse("accounts:account")
    assert ApiToken.objects.filter(user=trainer).count() == 1
    # Between the POST and the GET the token is in no table, sessions included, in plain text.
    token = ApiToken.objects.get(user=trainer)
    stored = [s.session_data + json.dumps(s.get_decoded()) for s in Session.objects.all()]
    assert all(token.prefix not in text for text in stored)
    shown = trainer_client.get(response.url)
    assert shown["Cache-Control"] == "no-store"
    body = shown.content.decode()
    secret = re.search(r'id="new-token" readonly value="(tdm_[^"]+)"', body)[1]
    assert body.count(secret) == 1
    assert token.name == "my script" and secret.startswith(token.prefix)
    assert token.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert not ApiToken.objects.filter(key_hash__contains=secret[len(token.prefix) :]).exists()
    # Shown that once: the next GET (a reload) lists it by its prefix, never in full.
    page = trainer_client.get(reverse("accounts:account")).content.decode()
    assert f"{token.prefix}…" in page and secret not in page and "my script" in page
    assert 'id="new-token"' not in page
    assert ApiToken.objects.filter(user=trainer).count() == 1
    # And it works on the API.
    assert _bearer(secret).get(API_URL).status_code == 200


def test_a_new_token_is_shown_only_to_the_browser_that_made_it(trainer_client, trainer):
    """The session alone does not hold the token: a copy of the session cookie, without the
    short-lived cookie the POST set, sees no token."""
    response = trainer_client.post(reverse("accounts:token-create"), {"name": "my script"})
    other = Client()
    other.cookies[settings.SESSION_COOKIE_NAME] = trainer_client.cookies[
        settings.SESSION_COOKIE_NAME
    ].value
    page = other.get(response.url).content.decode()
    assert 'id="new-token"' not in page and "tdm_" not in page.replace(
        f"{ApiToken.objects.get().prefix}…", ""
    )
    # And it is gone for the browser that made it too: shown at most once.
    assert 'id="new-token"' not in trainer_client.get(response.url).content.decode()


def test_the_account_page_refuses_a_token_without_a_name(trainer_client):
    response = trainer_client.post(reverse("accounts:token-create"), {"name": "  "})
    assert response.status_code == 422
    assert not ApiToken.objects.exists()


MULTI_LINE_NAMES = ["a\nb", "a\r\nb", "tab\there", "line\u2028separator", "colour \x1b[31mred"]


@pytest.mark.parametrize("name", MULTI_LINE_NAMES)
def test_the_account_page_refuses_a_token_name_of_more_than_one_line(trainer_client, name):
    response = trainer_client.post(reverse("accounts:token-create"), {"name": name})
    assert response.status_code == 422
    assert response.context["form"].errors["name"] == [LINE_MESSAGE]
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("name", MULTI_LINE_NAMES)
def test_a_token_name_of_more_than_one_line_is_refused_by_the_command_and_the_service(
    trainer, name
):
    with pytest.raises(CommandError, match=re.escape(LINE_MESSAGE)):
        call_command("api_token", "create", "tess", name, stdout=StringIO(), stderr=StringIO())
    with pytest.raises(ValidationError) as refused:
        services.api_token_create(user=trainer, name=name)
    assert refused.value.message_dict == {"name": [LINE_MESSAGE]}
    assert not ApiToken.objects.exists()


def test_a_revoked_token_is_refused_with_401(trainer_client, trainer):
    created = services.api_token_create(user=trainer, name="ci")
    assert _bearer(created.secret).get(API_URL).status_code == 200
    response = trainer_client.post(reverse("accounts:token-revoke", args=[created.token.pk]))
    assert response.status_code == 302
    refused = _bearer(created.secret).get(API_URL)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert refused["Content-Type"].startswith("application/json")
    page = trainer_client.get(reverse("accounts:account")).content.decode()
    assert "revoked" in page


def test_nobody_revokes_another_users_token(trainer, other_trainer):
    created = services.api_token_create(user=trainer, name="mine")
    other = Client()
    other.force_login(other_trainer)
    response = other.post(reverse("accounts:token-revoke", args=[created.token.pk]))
    assert response.status_code == 404
    assert _bearer(created.secret).get(API_URL).status_code == 200


def test_token_keyword_works_like_bearer_and_the_token_acts_with_its_users_role(
    trainer, plain_user
):
    trainer_token = services.api_token_create(user=trainer, name="t").secret
    assert _bearer(trainer_token, keyword="Token").get(API_URL).status_code == 200
    # A user without the trainer role gets 403 with a valid token, as with a session.
    outsider_token = services.api_token_create(user=plain_user, name="t").secret
    assert _bearer(outsider_token).get(API_URL).status_code == 403


def test_unknown_malformed_and_inactive_users_tokens_are_refused(trainer):
    secret = services.api_token_create(user=trainer, name="t").secret
    assert _bearer("tdm_not-a-token").get(API_URL).status_code == 401
    assert Client(HTTP_AUTHORIZATION="Bearer").get(API_URL).status_code == 401
    assert Client(HTTP_AUTHORIZATION=f"Bearer {secret} extra").get(API_URL).status_code == 401
    trainer.is_active = False
    trainer.save()
    assert _bearer(secret).get(API_URL).status_code == 401


def test_a_request_without_credentials_gets_401_with_a_bearer_challenge(db):
    response = Client().get(API_URL)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_http_basic_is_off_by_default(trainer):
    import base64

    credentials = base64.b64encode(b"tess:" + b"a-Strong-test-passw0rd").decode()
    response = Client(HTTP_AUTHORIZATION=f"Basic {credentials}").get(API_URL)
    assert response.status_code == 401


def test_last_used_is_recorded_at_most_once_per_period(trainer):
    created = services.api_token_create(user=trainer, name="t")
    assert created.token.last_used_at is None
    _bearer(created.secret).get(API_URL)
    created.token.refresh_from_db()
    first_use = created.token.last_used_at
    assert first_use is not None
    _bearer(created.secret).get(API_URL)
    created.token.refresh_from_db()
    assert created.token.last_used_at == first_use


def test_api_token_command_creates_lists_and_revokes(trainer):
    out, err = StringIO(), StringIO()
    call_command("api_token", "create", "tess", "nightly export", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert secret.startswith("tdm_") and "only this once" in err.getvalue()
    assert _bearer(secret).get(API_URL).status_code == 200
    token = ApiToken.objects.get(user=trainer)

    listing = StringIO()
    call_command("api_token", "list", "tess", stdout=listing)
    assert f"{token.prefix}…" in listing.getvalue() and "nightly export" in listing.getvalue()
    assert secret not in listing.getvalue()

    call_command("api_token", "revoke", "tess", str(token.pk), stdout=StringIO())
    assert _bearer(secret).get(API_URL).status_code == 401
    with pytest.raises(CommandError, match="No API token"):
        call_command("api_token", "revoke", "tess", "999999")
    with pytest.raises(CommandError, match="No user named"):
        call_command("api_token", "list", "nobody-here")


def test_the_schema_documents_bearer_token_authentication(admin_client_):
    response = admin_client_.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    schema = json.loads(response.content)
    assert schema["components"]["securitySchemes"]["apiToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A personal API token (Account page, or `manage.py api_token create`).",
    }
