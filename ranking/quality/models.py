"""Stored trust estimates: the one-coin Dawid-Skene estimate (``ranking.quality.trust``) over a
scope's rankings, made by a periodic task and by exports, so pages read it instead of running
the estimate on every view."""

from django.conf import settings
from django.db import models


class TrustEstimate(models.Model):
    """One estimate over a scope: one project's rankings, or (no project) every project's.
    ``rankings`` and ``last_ranking_id`` say which rankings it counted: it is current while the
    scope still has exactly those."""

    project = models.ForeignKey(
        "ranking.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="trust_estimates",
    )
    rankings = models.PositiveIntegerField()
    last_ranking_id = models.PositiveBigIntegerField(null=True, blank=True)
    estimated_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["project", "-estimated_at"], name="trust_estimate_latest")]

    def __str__(self) -> str:
        return (
            f"Trust over {self.project_id or 'all projects'} at {self.estimated_at:%Y-%m-%d %H:%M}"
        )


class TrainerTrust(models.Model):
    """One trainer's trust in an estimate."""

    estimate = models.ForeignKey(TrustEstimate, on_delete=models.CASCADE, related_name="trainers")
    trainer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    trust = models.FloatField()
    judgements = models.PositiveIntegerField()
    gold_judgements = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["estimate", "trainer"], name="trainer_trust_once"),
        ]

    def __str__(self) -> str:
        return f"{self.trainer_id}: {self.trust:.2f}"
