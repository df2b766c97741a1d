import logging

import pytest
from django.core.management import call_command
from django.test import RequestFactory
from django.urls import reverse

from accounts.roles import TRAINER_GROUP
from config.log import ClientErrorFilter

PAGES_FOR_TRAINERS = ["home", "labeling:conversation-list", "ranking:rank", "sampler:generate"]
PAGES_FOR_STAFF = ["ranking:exports", "sampler:training"]


@pytest.mark.django_db
@pytest.mark.parametrize("name", PAGES_FOR_TRAINERS + PAGES_FOR_STAFF)
def test_anonymous_user_is_redirected_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


@pytest.mark.django_db
def test_anonymous_api_request_gets_json_403_not_a_redirect(client):
    response = client.get("/api/conversations/")
    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("name", PAGES_FOR_TRAINERS)
def test_trainer_sees_trainer_pages_and_the_nav(trainer_client, name):
    response = trainer_client.get(reverse(name))
    assert response.status_code == 200
    body = response.content.decode()
    for label in ("Write", "Rank"):
        assert f">{label}</a>" in body
    assert ">Exports</a>" not in body  # admin-only links are hidden from trainers


@pytest.mark.parametrize("name", PAGES_FOR_STAFF)
def test_trainer_is_refused_admin_pages(trainer_client, name):
    response = trainer_client.get(reverse(name))
    assert response.status_code == 403
    # The app's page, saying why, with the navigation to go on from.
    body = response.content.decode()
    assert "This page is for admins." in body and ">Rank</a>" in body


def test_a_refused_page_is_logged_as_one_line_without_a_traceback(trainer_client, caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        assert trainer_client.get(reverse("sampler:training")).status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage().startswith("Forbidden (Permission denied)")
    assert record.status_code == 403 and record.exc_info is None


def test_a_server_error_keeps_its_traceback_in_the_log():
    record = logging.LogRecord("django.request", logging.ERROR, "", 0, "boom", None, None)
    record.status_code = 500
    record.exc_info = (ValueError, ValueError("boom"), None)
    assert ClientErrorFilter().filter(record) and record.exc_info is not None


@pytest.mark.parametrize("name", PAGES_FOR_STAFF)
def test_admin_sees_admin_pages_and_admin_nav(admin_client_, name):
    response = admin_client_.get(reverse(name))
    assert response.status_code == 200
    body = response.content.decode()
    for label in ("Exports", "Training", "Admin"):
        assert f">{label}</a>" in body


def test_logged_in_user_without_role_is_refused_trainer_pages(client, plain_user):
    client.force_login(plain_user)
    assert client.get(reverse("labeling:conversation-list")).status_code == 403


@pytest.mark.django_db
def test_login_with_password_then_logout(client, trainer):
    from tests.conftest import PASSWORD

    page = client.get(reverse("login"))
    assert b"csrfmiddlewaretoken" in page.content
    response = client.post(reverse("login"), {"username": "tess", "password": PASSWORD})
    assert response.status_code == 302 and response.url == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


@pytest.mark.django_db
def test_wrong_password_shows_an_error_and_keeps_the_username(client, trainer):
    response = client.post(reverse("login"), {"username": "tess", "password": "nope"})
    assert response.status_code == 200
    assert b'role="alert"' in response.content
    assert b'value="tess"' in response.content


@pytest.mark.django_db
def test_bootstrap_creates_demo_accounts_once_and_prints_passwords_once(capsys):
    from django.contrib.auth import authenticate, get_user_model

    call_command("bootstrap")
    first = capsys.readouterr().out
    assert "username=admin" in first and "username=trainer" in first
    trainer_password = first.split("username=trainer")[1].split("password=")[1].split()[0]
    # Authentication needs the request (django-axes counts failures per address).
    user = authenticate(RequestFactory().post("/"), username="trainer", password=trainer_password)
    assert user is not None and user.groups.filter(name=TRAINER_GROUP).exists()
    assert get_user_model().objects.get(username="admin").is_staff

    call_command("bootstrap")
    second = capsys.readouterr().out
    assert "password=" not in second


@pytest.mark.django_db
def test_bootstrap_in_production_creates_no_accounts(settings, capsys):
    from django.contrib.auth import get_user_model

    settings.PRODUCTION = True
    call_command("bootstrap")
    assert get_user_model().objects.count() == 0
    assert "password=" not in capsys.readouterr().out
