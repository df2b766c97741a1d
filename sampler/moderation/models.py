from django.db import models

from sampler.generation.models import Sample


class ModerationResult(models.Model):
    """What the content filter said about one sample; one row per sample and filter version."""

    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="moderation_results")
    filter_name = models.CharField(max_length=200)
    filter_version = models.CharField(max_length=100)
    flagged = models.BooleanField()
    # The categories that flagged the sample (empty when it passed).
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
        ]

    def __str__(self) -> str:
        verdict = "flagged" if self.flagged else "passed"
        return f"Sample {self.sample_id} {verdict} by {self.filter_name}"
