from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.db.models import QuerySet

from accounts.models import ApiToken
from config.querysets import ids_existing, ids_named


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


def user_ids_by_username(*, usernames: list[str]) -> tuple[int, ...]:
    """The ids of the users named; ValidationError naming any that is unknown."""
    return ids_named(get_user_model().objects.all(), "username", usernames, what="user", key="user")


def user_ids_existing(*, ids: list[int] | tuple[int, ...], key: str) -> tuple[int, ...]:
    """``ids`` when each names a user; ValidationError under ``key`` naming those that do not."""
    return ids_existing(get_user_model().objects.all(), ids, what="user", key=key)
