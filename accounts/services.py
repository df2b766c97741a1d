import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiToken
from accounts.roles import TRAINER_GROUP

# Tokens look like "tdm_<43 url-safe characters>": the prefix makes a leaked one easy to spot
# (secret scanners, logs); the rest is 256 random bits.
TOKEN_PREFIX = "tdm_"
TOKEN_DISPLAY_LENGTH = len(TOKEN_PREFIX) + 6
# How stale last_used_at may get before a request refreshes it (one write per token per period,
# not one per request).
TOKEN_LAST_USED_PERIOD = timedelta(minutes=5)


@dataclass(frozen=True)
class CreatedAccount:
    username: str
    password: str
    role: str


@dataclass(frozen=True)
class CreatedToken:
    token: ApiToken
    # The token itself, shown to its owner once and stored nowhere.
    secret: str


def trainer_group_ensure() -> Group:
    group, _ = Group.objects.get_or_create(name=TRAINER_GROUP)
    return group


def password_validate(*, password: str, username: str = "", email: str = "") -> None:
    """Django's password validators (AUTH_PASSWORD_VALIDATORS), as for every password set here.

    Raises ValidationError with every validator's message."""
    validate_password(password, user=get_user_model()(username=username, email=email))


@transaction.atomic
def user_create_trainer(*, username: str, password: str, email: str = "") -> AbstractUser:
    password_validate(password=password, username=username, email=email)
    user = get_user_model().objects.create_user(username=username, password=password, email=email)
    user.groups.add(trainer_group_ensure())
    return user


@transaction.atomic
def demo_accounts_ensure() -> list[CreatedAccount]:
    """Create the embedded default's admin and demo trainer once, with random passwords.

    Returns only the accounts created by this call, so credentials are shown exactly once.
    """
    trainer_group_ensure()
    user_model = get_user_model()
    created: list[CreatedAccount] = []
    if not user_model.objects.filter(username="admin").exists():
        password = secrets.token_urlsafe(12)
        password_validate(password=password, username="admin")
        user_model.objects.create_superuser(username="admin", password=password, email="")
        created.append(CreatedAccount("admin", password, "admin"))
    if not user_model.objects.filter(username="trainer").exists():
        password = secrets.token_urlsafe(12)
        user_create_trainer(username="trainer", password=password)
        created.append(CreatedAccount("trainer", password, "trainer"))
    return created


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_token_create(*, user: AbstractUser, name: str) -> CreatedToken:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Name the token (what it is for)."})
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise ValidationError({"name": "At most 100 characters."})
    if not user.is_active:
        raise ValidationError("An inactive account cannot have API tokens.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, name=name, prefix=secret[:TOKEN_DISPLAY_LENGTH], key_hash=token_hash(secret)
    )
    return CreatedToken(token=token, secret=secret)


def api_token_revoke(*, user: AbstractUser, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s tokens (another user's token is not found)."""
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise ApiToken.DoesNotExist(f"No API token {token_id} for {user.get_username()}.")
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_mark_used(*, token: ApiToken) -> None:
    """Record that the token was used, at most once per TOKEN_LAST_USED_PERIOD."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < TOKEN_LAST_USED_PERIOD:
        return
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    token.last_used_at = now
