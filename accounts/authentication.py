"""API token authentication: ``Authorization: Bearer <token>`` (or ``Token <token>``)."""

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    BasicAuthentication,
    get_authorization_header,
)

from accounts import selectors, services
from accounts.lockout import lockout_detail, lockout_minutes

KEYWORDS = (b"bearer", b"token")


class ApiTokenAuthentication(BaseAuthentication):
    """Finds the token by its SHA-256 (no password hash per request); revoked tokens and
    inactive users are refused with 401. Other Authorization schemes are left to the next
    authentication class."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                _("Invalid Authorization header: expected 'Bearer <token>'.")
            )
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError as error:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from error
        token = selectors.api_token_by_secret(key_hash=services.token_hash(secret))
        if token is None or not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("Invalid or revoked token."))
        services.api_token_mark_used(token=token)
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (with this challenge) rather than 403 to a request without
        # credentials.
        return 'Bearer realm="api"'


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (Account page, or `manage.py api_token create`).",
        }


class BasicAuthenticationWithLockout(BasicAuthentication):
    """DRF's HTTP Basic (on with API_BASIC_AUTH), answering 429 with Retry-After instead of 401
    while the username is locked out from this address or from every address
    (``accounts.lockout``; axes marks DRF's request, which its middleware never sees)."""

    def authenticate_credentials(self, userid, password, request=None):
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if getattr(request, "axes_locked_out", False):
                raise exceptions.Throttled(
                    wait=lockout_minutes() * 60, detail=lockout_detail(request)
                ) from None
            raise
