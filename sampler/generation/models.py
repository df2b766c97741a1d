from django.db import models
from django.db.models import Q

from ranking.projects.models import project_key
from sampler.jobs.models import Job, JobStatus, job_error_public, job_indexes, job_requester
from sampler.registry.models import ModelVersion


class GenerationJob(Job):
    """A request for ``n`` completions of one conversation prefix from one model version."""

    class Purpose(models.TextChoices):
        SUGGESTION = "suggestion", "Suggestions while writing"
        PLAYGROUND = "playground", "Try the model"
        RANKING = "ranking", "Alternatives for a ranking task"
        MANUAL = "manual", "Manual (API / command line)"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="jobs")
    prefix_message = models.ForeignKey(
        "labeling.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generation_jobs",
        help_text="The last message of the conversation prefix the completions continue.",
    )
    # The exact prefix sent to the model, so provenance survives edits of the conversation.
    prompt_messages = models.JSONField(default=list)
    role = models.CharField(max_length=16, default="assistant")
    n = models.PositiveSmallIntegerField()
    params = models.JSONField(default=dict, help_text="Sampling parameters as used.")
    seed = models.BigIntegerField()
    purpose = models.CharField(max_length=16, choices=Purpose.choices, default=Purpose.MANUAL)
    notes = models.TextField(blank=True, help_text="E.g. how much of the prefix was truncated.")
    requested_by = job_requester("generation_jobs")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    project = project_key("generation_jobs")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            *job_indexes("genjob"),
            # A pool fill reads each project's last finished ranking preparation (whether it
            # failed) newest first: walked in this order, not sorted from every task it made.
            models.Index(
                fields=["-finished_at", "-id"],
                condition=Q(purpose="ranking", status__in=[JobStatus.FAILED, JobStatus.SUCCEEDED]),
                name="genjob_ranking_finished",
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=1) & Q(n__lte=64), name="job_n_in_range"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status}, n={self.n})"

    @property
    def error_public(self) -> str:
        """The error as a trainer may read it, without where its version is served from (its
        weights' path, its server's URL), which trainers never see."""
        version = self.model_version
        base_url = (version.backend_options or {}).get("base_url")
        return job_error_public(
            error=self.error,
            hidden=(version.path, base_url if isinstance(base_url, str) else ""),
        )


class Sample(models.Model):
    class FinishReason(models.TextChoices):
        END_OF_TURN = "end_of_turn", "End of turn"
        LENGTH = "length", "Hit max_new_tokens"

    class LogprobKind(models.TextChoices):
        """What ``logprob_sum`` measures: training reads these values, so it must know."""

        SAMPLING = "sampling", "At the sampling temperature, before top-k / top-p"
        RAW = "raw", "Under the model's raw distribution (temperature 1, unfiltered)"
        ENDPOINT = "endpoint", "As reported by an OpenAI-compatible server"
        NONE = "none", "Not available"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="samples")
    index = models.PositiveSmallIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    finish_reason = models.CharField(max_length=16, choices=FinishReason.choices)
    logprob_sum = models.FloatField(
        null=True, blank=True, help_text="Sum of the sampled tokens' log-probabilities."
    )
    logprob_kind = models.CharField(
        max_length=16, choices=LogprobKind.choices, default=LogprobKind.SAMPLING
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Stored while the content filter could not run (``ContentFilterProblem``): waiting for its
    # verdict, which the periodic sweep gives once it runs again. A database default too, so
    # code from before it (during an upgrade) inserts samples without it.
    moderation_pending = models.BooleanField(default=False, db_default=False)

    class Meta:
        ordering = ["job", "index"]
        indexes = [
            # The sweep's search for the samples waiting: few, in a large table.
            models.Index(
                fields=["id"],
                condition=Q(moderation_pending=True),
                name="sample_moderation_pending",
            ),
        ]
        constraints = [
            # A task that runs twice for the same job cannot store its samples twice.
            models.UniqueConstraint(fields=["job", "index"], name="sample_unique_per_job_index"),
        ]

    def __str__(self) -> str:
        return f"Sample {self.job_id}#{self.index}"
