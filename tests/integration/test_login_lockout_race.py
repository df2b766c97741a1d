"""The login lockout's limits, on PostgreSQL, with many attempts at once.

An attempt is allowed or refused by the failures counted so far, and its password is checked
after. Were the check and the count not one step per username, attempts arriving together
would all be allowed before any of their failures was counted, and each would have its
password tried, however many there were."""

import threading
import time

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Sum
from django.test import Client

from tests.conftest import PASSWORD, WAIT_SECONDS, recording_thread

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Twice the account-wide limit the test sets: enough to show attempts let through past it,
# few enough that the threads never wait long for one of the pool's connections.
ATTEMPTS = 12


class PasswordChecks:
    """Counts the passwords checked, and holds each check until every attempt has either had
    its password checked or been answered without: all attempts are decided before any of
    their failures can be counted, the order that lets the most through."""

    def __init__(self, check) -> None:
        self.check = check
        self.tried = 0
        self.refused = 0
        self.condition = threading.Condition()
        self.this_thread = threading.local()  # whether this thread's password was checked

    def _all_decided(self) -> bool:
        return self.tried + self.refused >= ATTEMPTS

    def checked(self, user, raw_password) -> bool:
        self.this_thread.tried = True
        # Back to the pool while it waits (the pool has fewer connections than attempts).
        connection.close()
        with self.condition:
            self.tried += 1
            self.condition.notify_all()
            assert self.condition.wait_for(self._all_decided, timeout=WAIT_SECONDS)
        return self.check(user, raw_password)

    def answered_without_a_check(self) -> None:
        with self.condition:
            self.refused += 1
            self.condition.notify_all()


@pytest.fixture
def password_checks(monkeypatch) -> PasswordChecks:
    user_model = get_user_model()
    checks = PasswordChecks(user_model.check_password)
    monkeypatch.setattr(user_model, "check_password", lambda user, raw: checks.checked(user, raw))
    return checks


def _guess(address: str, checks: PasswordChecks) -> int:
    response = Client(REMOTE_ADDR=address).post(
        "/accounts/login/", {"username": "tess", "password": "wrong password"}
    )
    if not getattr(checks.this_thread, "tried", False):
        checks.answered_without_a_check()
    return response.status_code


@pytest.mark.parametrize(
    ("spread", "limit"),
    [(True, "LOGIN_ACCOUNT_FAILURE_LIMIT"), (False, "AXES_FAILURE_LIMIT")],
    ids=["from-as-many-addresses", "from-one-address"],
)
def test_attempts_at_once_have_no_more_passwords_tried_than_the_limit(
    trainer, settings, password_checks, spread, limit
):
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_ACCOUNT_FAILURE_LIMIT = 6
    outcome: dict[str, object] = {}
    addresses = [f"10.8.0.{n}" if spread else "10.8.0.1" for n in range(ATTEMPTS)]
    threads = [
        recording_thread(lambda address=address: _guess(address, password_checks), outcome, n)
        for n, address in enumerate(addresses)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WAIT_SECONDS
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
        assert not thread.is_alive(), "an attempt did not end"

    assert "error" not in outcome, outcome
    allowed = getattr(settings, limit)
    assert password_checks.tried == allowed
    # Those refused are answered as locked out, the failures as failures or as locked out (a
    # failure told while the count is at the limit).
    assert {outcome[n] for n in range(ATTEMPTS)} <= {200, 429}
    assert sum(outcome[n] == 429 for n in range(ATTEMPTS)) >= ATTEMPTS - allowed
    counted = AccessAttempt.objects.filter(username="tess").aggregate(
        total=Sum("failures_since_start")
    )
    assert counted["total"] == allowed
    # The right password is refused now from the attempts' address, and from every address
    # once the account-wide limit is reached.
    for address in ["10.8.0.1", "10.8.1.1"] if spread else ["10.8.0.1"]:
        response = Client(REMOTE_ADDR=address).post(
            "/accounts/login/", {"username": "tess", "password": PASSWORD}
        )
        assert response.status_code == 429, address
