"""Versions of the labeling guidelines and who read which."""

from django.conf import settings
from django.db import models
from django.db.models import Q


class GuidelineVersion(models.Model):
    """One version of the labeling guidelines (Markdown). Editing creates a new version."""

    number = models.PositiveIntegerField(unique=True)
    text = models.TextField(max_length=50000)
    change_note = models.CharField(max_length=300, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="guideline_versions",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(condition=Q(number__gte=1), name="guideline_number_positive"),
        ]

    def __str__(self) -> str:
        return f"Guidelines v{self.number}"


class GuidelineAcknowledgement(models.Model):
    """A user confirmed reading one guideline version (asked once per new version)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="guideline_reads"
    )
    version = models.ForeignKey(
        GuidelineVersion, on_delete=models.CASCADE, related_name="acknowledgements"
    )
    acknowledged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "version"], name="guideline_read_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read v{self.version_id}"
