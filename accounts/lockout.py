"""Login lockout: django-axes counts wrong passwords (the login page, the admin's login, HTTP
Basic when on) for each username and address, and this module adds a limit per username over
every address, and what a locked-out client gets.

- Per username and address: ``LOGIN_FAILURE_LIMIT`` failures lock the username out from that
  address (django-axes itself, ``AXES_FAILURE_LIMIT``).
- Per username: ``LOGIN_ACCOUNT_FAILURE_LIMIT`` failures from all addresses together lock it
  out from every address, so guesses spread over many addresses are bounded too. A browser
  that has logged in as that user before (a signed cookie, ``KNOWN_BROWSER_COOKIE``) is not
  held by this limit, only by its own address's: an attacker cannot keep the real user out.
  An address with no failures is no such exemption: each fresh address of an attacker has
  none either.

A failure counts while its address's last failure for the username is within
``LOGIN_LOCKOUT_MINUTES``, and attempts refused during a lockout are not counted
(``AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT`` off), so a lockout ends at most
``LOGIN_LOCKOUT_MINUTES`` after the last failure it counted, whatever a client keeps sending.
A successful login clears the failures of its own username and address only: a user logging
in gives an attacker elsewhere no new guesses.

A locked-out client gets JSON under /api/, the login page with the reason elsewhere; both with
status 429 and Retry-After.
"""

from collections.abc import Callable
from datetime import timedelta

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username
from axes.models import AccessAttempt
from axes.signals import user_locked_out
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

# Marks a browser that logged in as a user (its username, signed): not held by that user's
# account-wide lockout. Renewed at each login.
KNOWN_BROWSER_COOKIE = "tandem_known_browser"
_KNOWN_BROWSER_SALT = "accounts.lockout.known-browser"
# Set on a request refused (or failed) past the account-wide limit: the reason says so.
_ACCOUNT_WIDE = "tandem_lockout_account_wide"
# Set on a request that logged a user in: the response marks the browser known to them.
_LOGGED_IN_AS = "tandem_logged_in_as"


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


def _known_browser(request: HttpRequest, username: str) -> bool:
    known = request.get_signed_cookie(
        KNOWN_BROWSER_COOKIE,
        default=None,
        salt=_KNOWN_BROWSER_SALT,
        max_age=timedelta(days=settings.LOGIN_KNOWN_BROWSER_DAYS),
    )
    return known == username


def _account_failures(request: HttpRequest, username: str) -> int:
    """The failures counted for ``username`` from every address (each address's while its last
    failure is within the lockout length)."""
    attempts = AccessAttempt.objects.filter(
        username=username, attempt_time__gte=get_cool_off_threshold(request)
    )
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


class LockoutHandler(AxesDatabaseHandler):
    """django-axes' handler (``AXES_HANDLER``) with the account-wide limit."""

    def is_locked(self, request, credentials: dict | None = None) -> bool:
        return super().is_locked(request, credentials) or self._account_locked(request, credentials)

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        super().user_login_failed(sender, credentials, request, **kwargs)
        # The failure that reaches the account-wide limit is answered as a lockout already,
        # as django-axes answers the one that reaches the per-address limit.
        if request is None or getattr(request, "axes_locked_out", False):
            return
        if self._account_locked(request, credentials):
            request.axes_locked_out = True
            request.axes_credentials = credentials
            user_locked_out.send(
                "axes",
                request=request,
                username=get_client_username(request, credentials),
                ip_address=request.axes_ip_address,
            )

    def user_logged_in(self, sender, request, user, **kwargs) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        setattr(request, _LOGGED_IN_AS, user.get_username())

    def _account_locked(self, request, credentials: dict | None) -> bool:
        username = get_client_username(request, credentials)
        if not username or _known_browser(request, username):
            return False
        if _account_failures(request, username) < settings.LOGIN_ACCOUNT_FAILURE_LIMIT:
            return False
        setattr(request, _ACCOUNT_WIDE, True)
        return True


class KnownBrowserMiddleware:
    """Gives the response of a request that logged a user in the cookie that marks its browser
    known to that user (the last user it logged in as)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        username = getattr(request, _LOGGED_IN_AS, None)
        if username:
            response.set_signed_cookie(
                KNOWN_BROWSER_COOKIE,
                username,
                salt=_KNOWN_BROWSER_SALT,
                max_age=settings.LOGIN_KNOWN_BROWSER_DAYS * 24 * 60 * 60,
                secure=settings.SESSION_COOKIE_SECURE,
                httponly=True,
                samesite="Lax",
            )
        return response
