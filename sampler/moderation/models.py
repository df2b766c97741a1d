import hashlib

from django.db import models
from django.db.models import Q

from sampler.generation.models import Sample


def text_sha256(text: str) -> str:
    """The key a verdict on a text of its own (not a sample's) is stored under."""
    return hashlib.sha256(text.encode()).hexdigest()


class ModerationResult(models.Model):
    """What the content filter said about one text; one row per text and filter version.

    The text is a sample's (``sample``), or, for a message whose text is no sample's (a
    suggestion its writer edited, a model's reply brought in by an import), the message's own:
    named by its SHA-256 (``text_sha256``), so a verdict is always about the very words it was
    given, whatever message holds them.
    """

    sample = models.ForeignKey(
        Sample, null=True, blank=True, on_delete=models.CASCADE, related_name="moderation_results"
    )
    # Set (and ``sample`` empty) for a verdict on a text that is no sample's.
    text_sha256 = models.CharField(max_length=64, blank=True, default="")
    filter_name = models.CharField(max_length=200)
    filter_version = models.CharField(max_length=100)
    flagged = models.BooleanField()
    # The categories that flagged the text (empty when it passed).
    categories = models.JSONField(default=list, blank=True)
    # Every score the filter computed, by category or label, flagged or not.
    scores = models.JSONField(default=dict, blank=True)
    # What matched (built-in filter), so a reviewer sees why without re-running it.
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["filter_name", "filter_version", "flagged"])]
        constraints = [
            # Filtering a sample again with the same filter (a re-delivered task) stores nothing.
            models.UniqueConstraint(
                fields=["sample", "filter_name", "filter_version"],
                name="moderation_unique_per_sample_filter",
            ),
            # Nor does filtering a text again.
            models.UniqueConstraint(
                fields=["text_sha256", "filter_name", "filter_version"],
                condition=Q(sample__isnull=True),
                name="moderation_unique_per_text_filter",
            ),
            models.CheckConstraint(
                condition=Q(sample__isnull=False, text_sha256="")
                | (Q(sample__isnull=True) & ~Q(text_sha256="")),
                name="moderation_is_of_a_sample_or_a_text",
            ),
        ]

    def __str__(self) -> str:
        verdict = "flagged" if self.flagged else "passed"
        subject = f"Sample {self.sample_id}" if self.sample_id else f"Text {self.text_sha256[:12]}"
        return f"{subject} {verdict} by {self.filter_name}"


class ContentFilterProblem(models.Model):
    """Why the configured content filter cannot run, as the last worker that tried it found (a
    setting refused, a classifier directory that does not load): at most one row, kept while
    the problem lasts and deleted once the filter runs again. Shown to staff with the filter's
    other counts; the texts waiting for the filter keep waiting meanwhile."""

    reason = models.TextField()
    # When this reason was first met, and when a worker last met it.
    since = models.DateTimeField()
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Content filter cannot run: {self.reason[:80]}"
