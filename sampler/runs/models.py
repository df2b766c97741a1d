from django.db import models

from sampler.jobs.models import Job, job_indexes, job_requester
from sampler.registry.models import ModelVersion


class TrainingRun(Job):
    """A training run (SFT, reward, PPO, DPO, KTO): config, data, progress, curves, output."""

    class Kind(models.TextChoices):
        SFT = "sft", "Supervised fine-tuning"
        REWARD = "reward", "Reward model"
        PPO = "ppo", "PPO"
        DPO = "dpo", "DPO"
        KTO = "kto", "KTO"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_version = models.ForeignKey(
        ModelVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_runs_from",
    )
    config = models.JSONField(default=dict)
    dataset = models.JSONField(
        default=dict, help_text="Filters, row counts and sha256 of the data."
    )
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(default=dict, blank=True, help_text="Metric curves by name.")
    log = models.TextField(blank=True)
    # The ModelVersion a successful run registers (it links back through `training_run`).
    output_name = models.CharField(max_length=200, blank=True)
    # Resumable state (weights, optimizer, step) kept while the run is unfinished.
    checkpoint_dir = models.CharField(max_length=1000, blank=True)
    started_by = job_requester("training_runs")

    class Meta:
        ordering = ["-created_at"]
        indexes = job_indexes("trainingrun")

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"


def run_of_kind(kind: str) -> str:
    """A run of ``kind`` as a sentence names it, by the kind's label ("A DPO run", "A
    supervised fine-tuning run"; a code that names no kind, as it is)."""
    if kind not in TrainingRun.Kind.values:
        return f"A {kind} run"
    label = TrainingRun.Kind(kind).label
    if not label[1:2].isupper():  # a word, not an acronym
        label = label[0].lower() + label[1:]
    return f"A {label} run"
