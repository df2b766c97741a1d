from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A user's token for scripts. Only its SHA-256 is stored; the token itself is shown once.

    A token is 256 random bits, so a plain (unsalted, fast) hash is as safe as a password hash
    would be, and checking one costs microseconds instead of a password hash's fraction of a
    second on every request.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, help_text="What the token is for (a script, a host).")
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
