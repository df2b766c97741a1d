from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet

from accounts.models import ApiToken


def api_token_list(*, user: AbstractUser) -> QuerySet[ApiToken]:
    """The user's tokens, newest first, revoked ones included (marked)."""
    return ApiToken.objects.filter(user=user)


def api_token_by_secret(*, key_hash: str) -> ApiToken | None:
    """The active token with this hash, with its user (None: unknown or revoked)."""
    return (
        ApiToken.objects.select_related("user")
        .filter(key_hash=key_hash, revoked_at__isnull=True)
        .first()
    )
