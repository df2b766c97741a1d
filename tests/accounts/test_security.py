"""Wrong passwords are locked out (django-axes), API requests throttled, passwords validated
wherever one is set, and every page carries the security headers."""

import base64
from datetime import timedelta
from unittest import mock

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db.models import F, Sum
from django.test import Client
from django.urls import reverse
from kombu.exceptions import OperationalError as BrokerDown
from rest_framework.authentication import SessionAuthentication
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts import services
from accounts.authentication import ApiTokenAuthentication, BasicAuthenticationWithLockout
from accounts.lockout import KNOWN_BROWSER_COOKIE
from accounts.services import user_create_trainer
from config.celery import app
from sampler.generation.models import GenerationJob
from tests.conftest import PASSWORD, free_port, settings_refusal

LOGIN = "/accounts/login/"
NEW_PASSWORD = "another-Strong-passw0rd"


def _log_in(client: Client, password: str, **extra):
    return client.post(LOGIN, {"username": "tess", "password": password}, **extra)


def test_login_page_locks_a_username_out_from_an_address_after_the_failure_limit(trainer, settings):
    settings.AXES_FAILURE_LIMIT = 5
    client = Client()
    for _ in range(4):
        assert _log_in(client, "wrong password").status_code == 200  # the form, with its error
    locked = _log_in(client, "wrong password")
    assert locked.status_code == 429
    # Locked: the right password no longer logs in from this address...
    response = _log_in(client, PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert int(response["Retry-After"]) == round(settings.AXES_COOLOFF_TIME * 3600)
    assert "_auth_user_id" not in client.session
    # ...while the same user from another address still can (no lockout of victims by others).
    elsewhere = _log_in(Client(), PASSWORD, REMOTE_ADDR="10.1.2.3")
    assert elsewhere.status_code == 302


def test_a_successful_login_resets_the_failure_count(trainer, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client()
    for _ in range(2):
        _log_in(client, "wrong password")
    assert _log_in(client, PASSWORD).status_code == 302
    client.logout()
    for _ in range(2):
        assert _log_in(client, "wrong password").status_code == 200
    assert _log_in(client, PASSWORD).status_code == 302


def test_an_async_login_counts_toward_the_same_lockout(trainer, settings):
    """Django's aauthenticate asks each backend's aauthenticate: LockoutBackend's inherited
    Django's own, which checked the password with nothing counted, and ModelBackend's after it
    checked it again. An async login view would have had no lockout."""
    from asgiref.sync import async_to_sync
    from django.contrib.auth import aauthenticate
    from django.test import RequestFactory

    settings.AXES_FAILURE_LIMIT = 3

    def attempt(password: str):
        request = RequestFactory().post(LOGIN, REMOTE_ADDR="10.9.0.1")
        return async_to_sync(aauthenticate)(request, username="tess", password=password)

    assert attempt(PASSWORD) == trainer
    for _ in range(3):
        assert attempt("wrong password") is None
    assert _counted() == 3
    assert attempt(PASSWORD) is None  # locked out, as a login page would be


# The account-wide limit: failures for one username from every address together.


def _spread(count: int, *, first: int = 0, password: str = "wrong password") -> list[int]:
    """``count`` logins as tess, each from an address of its own (10.4.0.<first>, ...): what
    an attacker spreading guesses over many addresses sends. Their status codes."""
    return [
        _log_in(Client(), password, REMOTE_ADDR=f"10.4.0.{first + n}").status_code
        for n in range(count)
    ]


def _counted(username: str = "tess") -> int:
    """The failures counted for ``username`` from every address."""
    attempts = AccessAttempt.objects.filter(username=username)
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


@pytest.fixture
def account_limits(settings):
    """3 failures from one address, 6 from all addresses together."""
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 6
    return settings


def test_a_username_is_locked_out_from_every_address_past_the_account_wide_limit(
    trainer, other_trainer, account_limits
):
    # Two guesses an address never reach the per-address limit; the sixth failure in all does.
    assert _spread(6) == [200] * 5 + [429]
    # The right password from an address that never failed is refused too...
    response = _log_in(Client(), PASSWORD, REMOTE_ADDR="10.4.1.1")
    assert response.status_code == 429
    assert "Too many failed logins for this account:" in response.content.decode()
    assert int(response["Retry-After"]) == round(account_limits.AXES_COOLOFF_TIME * 3600)
    # ...while another username from the attacker's addresses is not held.
    other = Client().post(LOGIN, {"username": "otto", "password": PASSWORD}, REMOTE_ADDR="10.4.0.1")
    assert other.status_code == 302


def test_a_browser_that_logged_in_as_the_user_before_is_not_held_by_the_account_wide_lockout(
    trainer, account_limits
):
    browser = Client(REMOTE_ADDR="10.5.0.1")
    assert _log_in(browser, PASSWORD).status_code == 302
    browser.post("/accounts/logout/")
    assert _spread(6)[-1] == 429
    # Another browser at the same address is held: the exemption is the browser's, not the
    # address's (an attacker's fresh addresses have no failures either).
    assert _log_in(Client(), PASSWORD, REMOTE_ADDR="10.5.0.1").status_code == 429
    assert _log_in(browser, PASSWORD).status_code == 302
    # It still has the per-address limit of every client.
    browser.post("/accounts/logout/")
    assert [_log_in(browser, "wrong password").status_code for _ in range(3)] == [200, 200, 429]


def test_a_password_change_voids_the_known_browser_cookies_issued_before_it(
    trainer, account_limits
):
    # Whoever once knew the password (and logged in with it) keeps no exemption once it changes.
    browser = Client(REMOTE_ADDR="10.5.0.1")
    assert _log_in(browser, PASSWORD).status_code == 302
    issued = browser.cookies[KNOWN_BROWSER_COOKIE]
    assert issued["httponly"] and issued["samesite"] == "Lax"
    browser.post("/accounts/logout/")
    trainer.set_password(NEW_PASSWORD)
    trainer.save()
    assert _spread(6)[-1] == 429
    assert _log_in(browser, NEW_PASSWORD).status_code == 429
    # The same cookie sent from elsewhere is no exemption either.
    elsewhere = Client(REMOTE_ADDR="10.5.0.2")
    elsewhere.cookies[KNOWN_BROWSER_COOKIE] = issued.value
    assert _log_in(elsewhere, NEW_PASSWORD).status_code == 429
    # A login with the new password (the lockout lifted) marks the browser known again.
    call_command("axes_reset_username", "tess")
    assert _log_in(browser, NEW_PASSWORD).status_code == 302
    browser.post("/accounts/logout/")
    assert _spread(6, first=20)[-1] == 429
    assert _log_in(browser, NEW_PASSWORD).status_code == 302


def test_a_successful_login_does_not_give_an_attacker_new_guesses_on_the_account(
    trainer, account_limits
):
    browser = Client(REMOTE_ADDR="10.5.0.1")
    assert _log_in(browser, PASSWORD).status_code == 302
    browser.post("/accounts/logout/")
    assert _spread(5) == [200] * 5
    # The user logs in (their address's own failures, none here, are cleared)...
    assert _log_in(browser, PASSWORD).status_code == 302
    # ...and the attacker's failures from elsewhere still count: the sixth locks the account.
    assert _spread(1, first=100) == [429]


def test_attempts_refused_during_a_lockout_are_not_counted_so_it_ends_a_lockout_length_later(
    trainer, account_limits
):
    # From one address: locked at 3; the attempts it keeps sending are refused, not counted
    # (else one address could keep the account-wide count growing forever).
    client = Client(REMOTE_ADDR="10.6.0.1")
    assert [_log_in(client, "wrong password").status_code for _ in range(8)] == [200, 200] + [
        429
    ] * 6
    assert _counted() == 3
    assert _spread(3) == [200, 200, 429]
    assert _spread(10, first=50) == [429] * 10
    assert _counted() == 6
    # A lockout length after the last failure it counted, the account is free again.
    cooloff = timedelta(hours=account_limits.AXES_COOLOFF_TIME, seconds=1)
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - cooloff)
    assert _log_in(Client(), PASSWORD, REMOTE_ADDR="10.4.1.1").status_code == 302


def test_http_basic_counts_toward_the_account_wide_limit(trainer, account_limits, monkeypatch):
    monkeypatch.setattr(
        APIView,
        "authentication_classes",
        [ApiTokenAuthentication, SessionAuthentication, BasicAuthenticationWithLockout],
    )

    def basic(password: str, address: str):
        header = base64.b64encode(f"tess:{password}".encode()).decode()
        client = Client(HTTP_AUTHORIZATION=f"Basic {header}", REMOTE_ADDR=address)
        return client.get("/api/conversations/")

    answers = [basic("wrong password", f"10.7.0.{n}").status_code for n in range(6)]
    assert answers == [401] * 5 + [429]
    locked = basic(PASSWORD, "10.7.1.1")
    assert locked.status_code == 429
    assert "Too many failed logins for this account:" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == round(account_limits.AXES_COOLOFF_TIME * 3600)


@pytest.mark.parametrize(
    "environment",
    [
        {"LOGIN_FAILURE_LIMIT": "10", "LOGIN_ACCOUNT_FAILURE_LIMIT": "10"},
        {"LOGIN_FAILURE_LIMIT": "40", "LOGIN_ACCOUNT_FAILURE_LIMIT": "30"},
    ],
    ids=["equal", "below"],
)
def test_an_account_wide_limit_not_above_the_per_address_one_is_refused_at_startup(
    environment, tmp_path
):
    assert "LOGIN_ACCOUNT_FAILURE_LIMIT" in settings_refusal(environment, tmp_path)


def test_http_basic_when_turned_on_counts_toward_the_same_lockout(trainer, settings, monkeypatch):
    """API_BASIC_AUTH=true adds HTTP Basic (the classes are read when DRF starts: set here as the
    setting sets them); its wrong passwords lock out like the login page's, with a JSON 429."""
    monkeypatch.setattr(
        APIView,
        "authentication_classes",
        [ApiTokenAuthentication, SessionAuthentication, BasicAuthenticationWithLockout],
    )
    settings.AXES_FAILURE_LIMIT = 3

    def basic(password: str):
        header = base64.b64encode(f"tess:{password}".encode()).decode()
        return Client(HTTP_AUTHORIZATION=f"Basic {header}").get("/api/conversations/")

    assert basic(PASSWORD).status_code == 200
    # The failure that reaches the limit is answered as a lockout already, as on the login page.
    assert [basic("wrong password").status_code for _ in range(3)] == [401, 401, 429]
    locked = basic(PASSWORD)
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == round(settings.AXES_COOLOFF_TIME * 3600)


def test_http_basic_successes_clear_no_failures_a_login_page_login_does(
    trainer, account_limits, monkeypatch
):
    """HTTP Basic checks the password on every request: were each success to clear its
    address's failures, a script's steady requests would give whoever guesses from its address
    (or from behind the same undeclared proxy) new guesses on the account every time."""
    monkeypatch.setattr(
        APIView,
        "authentication_classes",
        [ApiTokenAuthentication, SessionAuthentication, BasicAuthenticationWithLockout],
    )

    def basic(password: str) -> int:
        header = base64.b64encode(f"tess:{password}".encode()).decode()
        client = Client(HTTP_AUTHORIZATION=f"Basic {header}", REMOTE_ADDR="10.7.2.1")
        return client.get("/api/conversations/").status_code

    assert [basic("wrong password"), basic("wrong password"), basic(PASSWORD)] == [401, 401, 200]
    assert _counted() == 2
    assert basic("wrong password") == 429  # the third failure from the address
    call_command("axes_reset_username", "tess")
    assert [basic("wrong password"), basic("wrong password")] == [401, 401]
    assert _log_in(Client(), PASSWORD, REMOTE_ADDR="10.7.2.1").status_code == 302
    assert _counted() == 0


def test_api_requests_are_throttled_per_user_and_per_anonymous_address(
    trainer, other_trainer, monkeypatch, settings
):
    # The rates are read when DRF starts; the classes are the configured ones.
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "2/minute"}
    )
    settings.API_THROTTLE_ANON = "2/minute"
    token = services.api_token_create(user=trainer, name="t").secret
    scripted = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert [scripted.get("/api/conversations/").status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    throttled = scripted.get("/api/conversations/")
    assert throttled["Content-Type"].startswith("application/json")
    assert int(throttled["Retry-After"]) > 0
    anonymous = Client(REMOTE_ADDR="10.9.9.9")
    assert [anonymous.get("/api/conversations/").status_code for _ in range(3)] == [401, 401, 429]
    # Wrong tokens count as anonymous: guessing is throttled too.
    guessing = Client(REMOTE_ADDR="10.9.9.8", HTTP_AUTHORIZATION="Bearer tdm_guess")
    assert [guessing.get("/api/conversations/").status_code for _ in range(3)] == [401, 401, 429]
    # X-Forwarded-For is no other address unless proxies are declared (anyone can write it).
    forging = [
        Client(REMOTE_ADDR="10.9.9.7", HTTP_X_FORWARDED_FOR=f"10.1.1.{n}").get(
            "/api/conversations/"
        )
        for n in range(3)
    ]
    assert [response.status_code for response in forging] == [401, 401, 429]
    # A trainer with a valid token from that address gets through: only 401s are counted.
    other = services.api_token_create(user=other_trainer, name="t").secret
    valid = Client(REMOTE_ADDR="10.9.9.9", HTTP_AUTHORIZATION=f"Bearer {other}")
    assert valid.get("/api/conversations/").status_code == 200


def test_behind_a_declared_proxy_the_anonymous_count_is_per_forwarded_address(
    monkeypatch, settings
):
    monkeypatch.setattr(
        SimpleRateThrottle, "THROTTLE_RATES", {"user": "3/minute", "anon": "2/minute"}
    )
    settings.API_THROTTLE_ANON = "2/minute"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "NUM_PROXIES": 1,
    }  # as the setting makes it

    def through_proxy(client: str, forged: str) -> int:
        # The proxy appends the address it saw to what the client sent: the right-most is real.
        return (
            Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=f"{forged}, {client}")
            .get("/api/conversations/")
            .status_code
        )

    assert [through_proxy("10.2.2.2", f"10.1.1.{n}") for n in range(3)] == [401, 401, 429]
    assert through_proxy("10.3.3.3", "10.1.1.0") == 401  # another client behind the same proxy


def test_default_rates_come_from_the_environment_settings(settings):
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_THROTTLE_RATES == {
        "anon": settings.API_THROTTLE_ANON,
        "user": settings.API_THROTTLE_USER,
    }
    assert settings.API_THROTTLE_USER == "1200/minute" and settings.API_THROTTLE_ANON == "60/minute"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "password",
    ["x", "password123", "12345678901234", "tess-the-trainer"],
    ids=["short", "common", "numeric", "similar"],
)
def test_user_create_trainer_applies_the_password_validators(password):
    with pytest.raises(ValidationError):
        user_create_trainer(username="tess-the-trainer", password=password)


@pytest.mark.django_db
def test_create_trainer_command_refuses_a_weak_password_and_creates_nobody():
    from django.contrib.auth import get_user_model

    with pytest.raises(CommandError, match="Password refused: This password is too short"):
        call_command("create_trainer", "tina", "--password", "abc")
    assert not get_user_model().objects.filter(username="tina").exists()
    call_command("create_trainer", "tina", "--password", PASSWORD)
    assert get_user_model().objects.get(username="tina").check_password(PASSWORD)


def test_pages_and_the_api_carry_csp_and_the_other_security_headers(trainer_client, settings):
    settings.METRICS_ALLOWED_CIDRS = []  # /metrics refused (403): the headers all the same
    answers = [
        trainer_client.get(url)
        for url in [reverse("home"), reverse("accounts:account"), "/api/conversations/", LOGIN]
    ]
    # Errors the API answers as JSON in place of Django's pages, one it refuses before reading
    # the body, and the probes answered ahead of the rest of the stack: all carry them too.
    answers += [
        trainer_client.get("/api/nope/"),
        trainer_client.get("/api/projects"),
        trainer_client.post("/api/conversations/", "{}", content_type="application/json",
                            CONTENT_LENGTH=str(10**9)),
        trainer_client.get("/healthz"),
        trainer_client.get("/metrics"),
    ]  # fmt: skip
    assert [response.status_code for response in answers[4:]] == [404, 404, 413, 200, 403]
    for response in answers:
        url = response.request["PATH_INFO"]
        assert len(response["X-Request-ID"]) == 32, url
        policy = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
        assert directives["script-src"] == "'self'", url
        assert directives["style-src"] == "'self'", url
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert directives["frame-ancestors"] == "'none'"
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["X-Frame-Options"] == "DENY", url
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", url


def test_templates_hold_no_inline_code():
    """The policy above forbids it; this finds it before a browser does."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offending = []
    for template in root.glob("*/**/templates/**/*.html"):
        # Installed packages (.venv, .venv-vllm, node_modules) are not the project's templates.
        if any(part.startswith(".venv") or part == "node_modules" for part in template.parts):
            continue
        text = template.read_text()
        patterns = [
            r"<script(?![^>]*\bsrc=)[^>]*>",  # a script block
            r"\son[a-z]+\s*=",  # onclick=, onload=, ...
            r"""hx-vals\s*=\s*["']\s*js:""",
            r"hx-on[:-]",
            r"\sstyle\s*=",
            r"hx-trigger=\"[^\"]*\[",  # event filters are evaluated code
            r"javascript:",
        ]
        offending += [f"{template.relative_to(root)}: {p}" for p in patterns if re.search(p, text)]
    assert offending == []


@pytest.mark.django_db(transaction=True)
def test_api_requests_are_answered_while_the_cache_holding_the_throttle_counters_is_down(
    trainer, policy, monkeypatch, settings
):
    # Production keeps the counters in the broker's Redis: when it is down, a request is
    # answered as if nothing were counted (never a 500), and a job is kept for later (503).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/1",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    monkeypatch.setattr(app, "send_task", mock.Mock(side_effect=BrokerDown("Connection refused")))
    token = services.api_token_create(user=trainer, name="t").secret
    scripted = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert scripted.get("/api/conversations/").status_code == 200
    created = scripted.post(
        "/api/generation-jobs/",
        {"messages": [{"role": "user", "content": "hello?"}], "n": 1},
        content_type="application/json",
    )
    assert created.status_code == 503, created.content
    job = GenerationJob.objects.get(pk=created.json()["job"]["id"])
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is None
    assert Client(REMOTE_ADDR="10.9.9.6").get("/api/conversations/").status_code == 401


@pytest.mark.django_db
def test_create_trainer_takes_the_password_from_the_environment_not_the_command_line(
    monkeypatch,
):
    from django.contrib.auth import get_user_model

    monkeypatch.setenv("TRAINER_PASSWORD", PASSWORD)
    call_command("create_trainer", "tina")
    assert get_user_model().objects.get(username="tina").check_password(PASSWORD)


@pytest.mark.django_db
def test_create_trainer_without_a_password_or_a_terminal_says_how_and_creates_nobody(monkeypatch):
    from django.contrib.auth import get_user_model

    monkeypatch.delenv("TRAINER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="set TRAINER_PASSWORD, or run the command at a"):
        call_command("create_trainer", "tina")
    assert not get_user_model().objects.filter(username="tina").exists()
