from django.conf import settings
from django.db import models
from django.db.models import Q

from sampler.jobs.models import Job, job_indexes
from sampler.registry.models import ModelVersion


class ModelComparison(Job):
    """A head-to-head of two policy versions: replies to the same held-out prompts, judged by a
    reward model (win rate of ``version_a``); computed by a worker."""

    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    reward_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    # Prompt filters, prompt count and sampling settings, as used.
    config = models.JSONField(default=dict)
    # Wins, ties, win rate, mean scores / lengths / end-of-turn rates, a few examples.
    results = models.JSONField(default=dict, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_comparisons",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = job_indexes("comparison")
        constraints = [
            models.CheckConstraint(
                condition=~Q(version_a=models.F("version_b")), name="comparison_of_two_versions"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version_a} vs {self.version_b} ({self.status})"
