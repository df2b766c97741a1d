"""Login lockout: wrong passwords (the login page, the admin's login, HTTP Basic when on) are
counted for each username and address in django-axes' records, with its per-address limit; this
module counts them (ahead of the password check, below), adds a limit per username over every
address, and says what a locked-out client gets.

- Per username and address: ``LOGIN_FAILURE_LIMIT`` failures lock the username out from that
  address (django-axes itself, ``AXES_FAILURE_LIMIT``).
- Per username: ``LOGIN_ACCOUNT_FAILURE_LIMIT`` failures from all addresses together lock it
  out from every address, so guesses spread over many addresses are bounded too. A browser
  that has logged in as that user before (a signed cookie, ``KNOWN_BROWSER_COOKIE``) is not
  held by this limit while the user's password is the one it logged in with, only by its own
  address's: an attacker cannot keep the real user out, and whoever knew an old password keeps
  no exemption once it is changed.
  An address with no failures is no such exemption: each fresh address of an attacker has
  none either.

An attempt with a username is allowed or refused, and counted as a failure if allowed, in one
step per username before its password is checked (``LockoutHandler.attempt_begin``, under a
lock on the username): attempts that arrive at once are decided one after the other, each
seeing those allowed before it, so no more passwords are checked than the limits allow however
many attempts arrive together. An attempt whose password was right is taken back
(``LockoutHandler.attempt_succeeded``); one whose password was wrong stays counted.
``LockoutBackend`` (the authentication backend) does both around Django's password check.

A failure counts while its address's last failure for the username is within
``LOGIN_LOCKOUT_MINUTES``, and attempts refused during a lockout are not counted
(``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT`` off), so a lockout ends at most
``LOGIN_LOCKOUT_MINUTES`` after the last failure it counted, whatever a client keeps sending.
A successful login (on the login page or the admin's) clears the failures of its own username
and address only: a user logging in gives an attacker elsewhere no new guesses. An HTTP Basic
request whose password was right clears none: a script sends one after another, each of which
would give whoever guesses from its address new guesses.

A locked-out client gets JSON under /api/, the login page with the reason elsewhere; both with
status 429 and Retry-After.
"""

import logging
from collections.abc import Callable
from datetime import timedelta

from asgiref.sync import sync_to_async
from axes.attempts import get_cool_off_threshold
from axes.backends import AxesBackend
from axes.exceptions import AxesBackendPermissionDenied, AxesBackendRequestParameterRequired
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_str, get_client_username, get_credentials, get_failure_limit
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import F, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare, salted_hmac

from config.querysets import transaction_lock

# Marks a browser that logged in as a user (its username and a value drawn from the user's
# password, signed): not held by that user's account-wide lockout while that password is the
# user's. Renewed at each login.
KNOWN_BROWSER_COOKIE = "tandem_known_browser"
_KNOWN_BROWSER_SALT = "accounts.lockout.known-browser"
# Set on a request refused (or failed) past the account-wide limit: the reason says so.
_ACCOUNT_WIDE = "tandem_lockout_account_wide"
# Set on a request that logged a user in: the response marks the browser known to them.
_LOGGED_IN_AS = "tandem_logged_in_as"
# Set on a request counted as a failure before its password was checked: the attempt's row and
# that row's attempt time before (None when the count made the row), to take the count back.
_COUNTED_AHEAD = "tandem_lockout_counted_ahead"

log = logging.getLogger(__name__)


def lockout_minutes() -> int:
    return round(settings.AXES_COOLOFF_TIME * 60)


def lockout_detail(request: HttpRequest) -> str:
    """Why ``request`` is refused: the account from this address, or the account itself."""
    minutes = lockout_minutes()
    if getattr(request, _ACCOUNT_WIDE, False):
        return (
            f"Too many failed logins for this account: try again in {minutes} minutes, or from "
            "a browser that has logged in to it before."
        )
    return (
        f"Too many failed logins for this account from this address: try again in {minutes} "
        "minutes."
    )


def lockout_response(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    detail = lockout_detail(request)
    headers = {"Retry-After": str(lockout_minutes() * 60)}
    if request.path_info.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=429, headers=headers)
    response = render(request, "accounts/locked_out.html", {"detail": detail}, status=429)
    response["Retry-After"] = headers["Retry-After"]
    return response


def _known_browser_mark(user) -> str:
    """What a browser known to ``user`` holds: the username and a value drawn from the user's
    password hash (by way of its session hash), so a new password voids every mark made before
    it."""
    credentials = salted_hmac(
        _KNOWN_BROWSER_SALT, user.get_session_auth_hash(), algorithm="sha256"
    ).hexdigest()
    return f"{user.get_username()}:{credentials}"


def _known_browser(request: HttpRequest, username: str) -> bool:
    known = request.get_signed_cookie(
        KNOWN_BROWSER_COOKIE,
        default=None,
        salt=_KNOWN_BROWSER_SALT,
        max_age=timedelta(days=settings.LOGIN_KNOWN_BROWSER_DAYS),
    )
    if known is None or known.rpartition(":")[0] != username:
        return False
    user_model = get_user_model()
    try:
        user = user_model._default_manager.get_by_natural_key(username)
    except user_model.DoesNotExist:
        return False
    return constant_time_compare(known, _known_browser_mark(user))


def _account_failures(request: HttpRequest, username: str) -> int:
    """The failures counted for ``username`` from every address (each address's while its last
    failure is within the lockout length)."""
    attempts = AccessAttempt.objects.filter(
        username=username, attempt_time__gte=get_cool_off_threshold(request)
    )
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


def _username_lock(using: str, username: str) -> None:
    """Holds every other attempt for ``username`` until this transaction ends (PostgreSQL: an
    advisory lock on the username; SQLite runs one write at a time: ``transaction_lock``)."""
    transaction_lock(f"tandem.login-attempts:{username}", using=using)


class LockoutHandler(AxesDatabaseHandler):
    """django-axes' handler (``AXES_HANDLER``) with the account-wide limit, and attempts counted
    before their password is checked (``attempt_begin``)."""

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return super().is_locked(request, credentials) or self._account_locked(request, credentials)

    def attempt_begin(self, request, credentials: dict) -> bool:
        """Whether ``request`` may have its password checked. If so and it has a username (and
        is not on an allow-list), it is counted as a failure of its username and address now,
        decided and counted under a lock on the username: the attempts counted, failures and
        those still being checked alike, are what the next attempt's decision reads."""
        username = get_client_username(request, credentials)
        using = router.db_for_write(AccessAttempt)
        with transaction.atomic(using=using):
            if username:
                _username_lock(using, username)
            # As django-axes before it counts a failure: an expired row is not counted on.
            self.clean_expired_user_attempts(request, credentials)
            if not self.is_allowed(request, credentials):
                return False
            if username and not self.is_whitelisted(request, credentials):
                self._count_ahead(request, username)
        return True

    def attempt_succeeded(self, request) -> None:
        """Takes back the failure ``attempt_begin`` counted for ``request``: its password was
        right. Its row's attempt time goes back to what it was unless another attempt has
        moved it since."""
        counted = getattr(request, _COUNTED_AHEAD, None)
        if counted is None:
            return
        setattr(request, _COUNTED_AHEAD, None)
        pk, attempt_time_before = counted
        with transaction.atomic(using=router.db_for_write(AccessAttempt)):
            row = AccessAttempt.objects.filter(pk=pk)
            row.update(failures_since_start=F("failures_since_start") - 1)
            row.filter(failures_since_start__lte=0).delete()
            if attempt_time_before is not None:
                row.filter(attempt_time=request.axes_attempt_time).update(
                    attempt_time=attempt_time_before
                )

    def _count_ahead(self, request, username: str) -> None:
        # One row per username, address and user agent, as django-axes keeps them. The form's
        # data is not kept (django-axes keeps it for failures; this is not one yet).
        attempt, created = AccessAttempt.objects.select_for_update().get_or_create(
            username=username,
            ip_address=request.axes_ip_address,
            user_agent=request.axes_user_agent,
            defaults={
                "get_data": "",
                "post_data": "",
                "http_accept": request.axes_http_accept,
                "path_info": request.axes_path_info,
                "failures_since_start": 1,
                "attempt_time": request.axes_attempt_time,
            },
        )
        if not created:
            AccessAttempt.objects.filter(pk=attempt.pk).update(
                failures_since_start=F("failures_since_start") + 1,
                attempt_time=request.axes_attempt_time,
                http_accept=request.axes_http_accept,
                path_info=request.axes_path_info,
            )
        setattr(request, _COUNTED_AHEAD, (attempt.pk, None if created else attempt.attempt_time))

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        counted_ahead = request is not None and getattr(request, _COUNTED_AHEAD, None)
        if counted_ahead:
            # Counted already, by attempt_begin.
            setattr(request, _COUNTED_AHEAD, None)
            username = get_client_username(request, credentials)
            client = get_client_str(
                username,
                request.axes_ip_address,
                request.axes_user_agent,
                request.axes_path_info,
                request,
            )
            log.warning("Login failure by %s.", client)
            request.axes_failures_since_start = self.get_failures(request, credentials)
            if request.axes_failures_since_start >= get_failure_limit(request, credentials):
                self._lockout_tell(request, credentials)
        else:
            super().user_login_failed(sender, credentials, request, **kwargs)
        # The failure that reaches either limit is answered as a lockout already, as
        # django-axes answers the one that reaches the per-address limit.
        if request is None or getattr(request, "axes_locked_out", False):
            return
        if self._account_locked(request, credentials):
            self._lockout_tell(request, credentials)

    def _lockout_tell(self, request, credentials: dict) -> None:
        username = get_client_username(request, credentials)
        log.warning("Locking out %s after repeated login failures.", username)
        request.axes_locked_out = True
        request.axes_credentials = credentials
        user_locked_out.send(
            "axes", request=request, username=username, ip_address=request.axes_ip_address
        )

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        setattr(request, _LOGGED_IN_AS, user)

    def _account_locked(self, request, credentials: dict | None) -> bool:
        username = get_client_username(request, credentials)
        if not username or _known_browser(request, username):
            return False
        if _account_failures(request, username) < settings.LOGIN_ACCOUNT_FAILURE_LIMIT:
            return False
        setattr(request, _ACCOUNT_WIDE, True)
        return True


class LockoutBackend(AxesBackend):
    """The authentication backend (``AUTHENTICATION_BACKENDS``): django-axes' backend with
    Django's password check inside it, so that the attempt is counted before its password is
    checked (``LockoutHandler.attempt_begin``) and taken back when the password was right.

    A wrong password raises ``PermissionDenied``: Django's ``authenticate`` (or
    ``aauthenticate``, which takes the same steps here) then tells the failure (its signal,
    which the handler reads) and asks no later backend to check it."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None  # not a password login: nothing to check
        if not settings.AXES_ENABLED:
            return self._password_check(request, username, password, **kwargs)
        if request is None:
            raise AxesBackendRequestParameterRequired(
                "LockoutBackend requires a request as an argument to authenticate"
            )
        credentials = get_credentials(username=username, password=password, **kwargs)
        AxesProxyHandler.update_request(request)
        handler = AxesProxyHandler.get_implementation()
        if not handler.attempt_begin(request, credentials):
            # Not counted (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT off).
            request.axes_locked_out = True
            raise AxesBackendPermissionDenied("The username is locked out.")
        user = self._password_check(request, username, password, **kwargs)
        handler.attempt_succeeded(request)
        return user

    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        # Django's own (inherited) checks the password with nothing counted nor locked out:
        # an async login goes through the same steps as any other.
        return await sync_to_async(self.authenticate)(
            request, username=username, password=password, **kwargs
        )

    def _password_check(self, request, username, password, **kwargs):
        user = ModelBackend.authenticate(self, request, username, password, **kwargs)
        if user is None:
            raise PermissionDenied("Wrong username or password.")
        return user


class KnownBrowserMiddleware:
    """Gives the response of a request that logged a user in the cookie that marks its browser
    known to that user (the last user it logged in as) while the user's password is the one it
    logged in with."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, _LOGGED_IN_AS, None)
        if user is not None:
            response.set_signed_cookie(
                KNOWN_BROWSER_COOKIE,
                _known_browser_mark(user),
                salt=_KNOWN_BROWSER_SALT,
                max_age=settings.LOGIN_KNOWN_BROWSER_DAYS * 24 * 60 * 60,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
