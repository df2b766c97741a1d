import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.models import ApiToken, IdempotencyKey
from accounts.roles import TRAINER_GROUP
from config.text import one_line_problem

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
    if problem := one_line_problem(name):
        raise ValidationError({"name": problem})
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


# ---- idempotency keys (config/idempotency.py is the API's door to these) ----------------------


@dataclass(frozen=True)
class IdempotentRequest:
    """What a key is bound to: the user, the key, and the request it first came with: its
    body's bytes, and the JSON value the API's parser read from them (what the view reads)."""

    user: AbstractUser
    key: str
    method: str
    path: str
    # None where the body was read before the view (a session's CSRF check): its JSON is there.
    body: bytes | None
    data: Any

    @property
    def body_hash(self) -> str:
        """SHA-256 of the body's JSON written one way (keys sorted, no spaces, non-ASCII
        escaped): a retry whose client wrote the same JSON otherwise is the same request."""
        canonical = json.dumps(self.data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()

    @property
    def body_bytes_hash(self) -> str | None:
        """SHA-256 of the body's bytes: what keys stored before bodies were compared as JSON
        hold (kept ``IDEMPOTENCY_KEY_TTL_SECONDS``). A stored JSON hash is never the hash of
        another request's bytes: those bytes would be that same JSON written one way."""
        return None if self.body is None else hashlib.sha256(self.body).hexdigest()


@dataclass(frozen=True)
class IdempotentAnswer:
    status_code: int
    body: Any
    # True: a stored answer to an earlier request with the key; nothing was done this time.
    replayed: bool


class IdempotencyKeyReused(Exception):
    """The key was used for another request (another path, method or body)."""


class IdempotencyKeyBusy(Exception):
    """The key's first request left no answer to give (its row was deleted meanwhile)."""


def idempotency_key_cutoff() -> timedelta:
    return timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL_SECONDS)


@transaction.atomic
def idempotent_perform(
    *, request: IdempotentRequest, perform: Callable[[], tuple[int, Any]]
) -> IdempotentAnswer:
    """``perform()`` (its status code and JSON body) once per user and key: the answer is stored
    with the key in the transaction of ``perform``'s writes, and a retry of the same request
    gets it back without ``perform`` being called.

    The key's row is inserted before ``perform`` runs: a request sent at the same time with the
    same key waits on the unique constraint until this transaction ends (PostgreSQL; SQLite
    takes one writer at a time), then finds the answer. ``perform`` raising or answering an
    error (400 and above) rolls back its writes and the key with them, so the request can be
    sent again with it.

    Raises ``IdempotencyKeyReused`` for a key first used with another method, path or body."""
    now = timezone.now()
    # A key past its time is gone, even before the periodic task deletes it.
    IdempotencyKey.objects.filter(
        user=request.user, key=request.key, created_at__lt=now - idempotency_key_cutoff()
    ).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(
                user=request.user,
                key=request.key,
                method=request.method,
                path=request.path,
                request_hash=request.body_hash,
                created_at=now,
            )
    except IntegrityError:
        return _idempotent_answer_stored(request)
    status_code, body = perform()
    if status_code >= 400:
        # An error is not kept: whatever the request wrote is rolled back with its key, so it can
        # be corrected and sent again with the same key.
        transaction.set_rollback(True)
        return IdempotentAnswer(status_code=status_code, body=body, replayed=False)
    record.status_code, record.response_body = status_code, body
    record.save(update_fields=["status_code", "response_body"])
    return IdempotentAnswer(status_code=status_code, body=body, replayed=False)


def _idempotent_answer_stored(request: IdempotentRequest) -> IdempotentAnswer:
    stored = IdempotencyKey.objects.filter(user=request.user, key=request.key).first()
    if stored is None or stored.status_code is None:
        raise IdempotencyKeyBusy
    if (stored.method, stored.path) != (request.method, request.path) or (
        stored.request_hash not in {request.body_hash, request.body_bytes_hash}
    ):
        raise IdempotencyKeyReused
    return IdempotentAnswer(
        status_code=stored.status_code, body=stored.response_body, replayed=True
    )


def idempotency_keys_delete_expired() -> int:
    """Delete the keys older than ``IDEMPOTENCY_KEY_TTL_SECONDS``; how many were."""
    cutoff = timezone.now() - idempotency_key_cutoff()
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
