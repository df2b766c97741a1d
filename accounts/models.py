from django.conf import settings
from django.db import models

from config.text import validate_one_line


class ApiToken(models.Model):
    """A user's token for scripts. Only its SHA-256 is stored; the token itself is shown once.

    A token is 256 random bits, so a plain (unsalted, fast) hash is as safe as a password hash
    would be, and checking one costs microseconds instead of a password hash's fraction of a
    second on every request.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    # One line, as the Account page's list and `api_token list` show it.
    name = models.CharField(
        max_length=100,
        validators=[validate_one_line],
        help_text="What the token is for (a script, a host).",
    )
    # The first characters of the token, to tell tokens apart in lists.
    prefix = models.CharField(max_length=16)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Refreshed at most every few minutes (accounts.authentication), like last_login.
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyKey(models.Model):
    """An ``Idempotency-Key`` a user sent with a creating POST (config/idempotency.py), with the
    request it came with and the answer it got, stored in the transaction of the request's
    writes: a retry with the same key is answered from here and writes nothing.

    A key is the user's: one row per user and key, whatever the endpoint (the same key sent to
    another endpoint, or with another body, is refused). Kept ``IDEMPOTENCY_KEY_TTL_SECONDS``
    from ``created_at``; older keys are as good as gone and a periodic task deletes them.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    # The path with its query string, as the request named it.
    path = models.TextField()
    # SHA-256 of the request body's JSON written one way (keys sorted, no spaces: the same JSON
    # sent again written otherwise is the same request); for keys stored before bodies were
    # compared as JSON, SHA-256 of the body's bytes (accounts.services.IdempotentRequest).
    request_hash = models.CharField(max_length=64)
    # Empty only inside the transaction that does the request's work: a committed row always
    # holds its answer.
    status_code = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            # What makes two requests sent at once with one key do the work once: the second
            # one's insert waits for the first's transaction, then fails.
            models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.method} {self.path})"
