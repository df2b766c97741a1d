from django.conf import settings
from django.db import models

from config.text import counted
from ranking.projects.models import project_key
from sampler.jobs.models import Job, job_indexes, progress_fraction

# Why an export leaves out data it would otherwise write (``DatasetExport.skipped``'s keys),
# and how the export list says so.
SKIPPED_RANKINGS_WITHOUT_PROMPT = "rankings_without_prompt"
SKIPPED_ATTACKS_WITHOUT_PROMPT = "red_team_attacks_without_prompt"
# Each reason in words, for one and for more.
SKIP_REASONS = {
    SKIPPED_RANKINGS_WITHOUT_PROMPT: (
        "ranking without a prompt (its task's generation job was deleted)",
        "rankings without a prompt (their task's generation job was deleted)",
    ),
    SKIPPED_ATTACKS_WITHOUT_PROMPT: (
        "red-team attack without a prompt",
        "red-team attacks without a prompt",
    ),
}


def skipped_summary(skipped: dict[str, int]) -> str:
    """``skipped`` (reason -> how many) in words: "2 rankings without a prompt (...)", "1
    ranking without a prompt (...)"."""
    return "; ".join(
        counted(count, *SKIP_REASONS.get(reason, (reason, reason)))
        for reason, count in sorted(skipped.items())
    )


class DatasetExport(Job):
    """A dataset file written by a job (progress, rows, size and sha256 once written)."""

    class Format(models.TextChoices):
        RANKINGS = "rankings", "Rankings (raw, one record per ranking)"
        PAIRS = "pairs", "Preference pairs (prompt / chosen / rejected)"
        DEMONSTRATIONS = "demonstrations", "Demonstrations (messages, for SFT)"

    format = models.CharField(max_length=32, choices=Format.choices)
    filters = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    row_count = models.PositiveBigIntegerField(default=0)
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    file_path = models.CharField(max_length=1000, blank=True)
    # Reason (``SKIP_REASONS``) -> how many were left out of the file: data that would make a
    # record with a prompt it no longer knows is skipped, never written with an empty prompt.
    skipped = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dataset_exports"
    )
    project = project_key("exports")

    class Meta:
        ordering = ["-created_at"]
        indexes = job_indexes("export")
        constraints = [progress_fraction("export_progress_fraction")]

    def __str__(self) -> str:
        return f"{self.get_format_display()} export {self.pk} ({self.status})"

    @property
    def skipped_summary(self) -> str:
        return skipped_summary(self.skipped or {})
