from django.conf import settings
from django.db import models
from django.db.models import Q

from ranking.projects.models import project_key
from sampler.jobs.models import Job, job_indexes, job_requester
from sampler.registry.models import ModelVersion


def _two_versions(name: str) -> models.CheckConstraint:
    """``version_a`` and ``version_b`` are two versions: none is compared with itself."""
    return models.CheckConstraint(condition=~Q(version_a=models.F("version_b")), name=name)


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
    requested_by = job_requester("model_comparisons")
    project = project_key("comparisons")

    class Meta:
        ordering = ["-created_at"]
        indexes = job_indexes("comparison")
        constraints = [_two_versions("comparison_of_two_versions")]

    def __str__(self) -> str:
        return f"{self.version_a} vs {self.version_b} ({self.status})"


class SideBySide(models.Model):
    """Two policy versions' replies to one prompt, for trainers to vote on (the human judge).
    Made from a comparison's samples; the page shows them in a random order."""

    comparison = models.ForeignKey(
        ModelComparison, null=True, blank=True, on_delete=models.CASCADE, related_name="items"
    )
    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    prompt = models.JSONField(default=list)
    reply_a = models.TextField(max_length=20000)
    reply_b = models.TextField(max_length=20000)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [_two_versions("side_by_side_of_two_versions")]

    def __str__(self) -> str:
        return f"{self.version_a} vs {self.version_b} #{self.pk}"


class SideBySideVote(models.Model):
    """One trainer's verdict on one side-by-side; ``a_shown_first`` records the order shown."""

    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "About the same"

    item = models.ForeignKey(SideBySide, on_delete=models.CASCADE, related_name="votes")
    voter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="side_by_side_votes"
    )
    choice = models.CharField(max_length=8, choices=Choice.choices)
    a_shown_first = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(fields=["item", "voter"], name="one_vote_per_item_and_voter"),
        ]

    def __str__(self) -> str:
        return f"{self.voter_id} on {self.item_id}: {self.choice}"
