from django.conf import settings
from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A registered model directory, loadable with stock ``from_pretrained``."""

    class Kind(models.TextChoices):
        POLICY = "policy", "Policy (causal LM)"
        REWARD = "reward", "Reward model"

    class Source(models.TextChoices):
        EMBEDDED = "embedded", "Bundled tiny model"
        CONFIGURED = "configured", "From SAMPLER_MODEL"
        TRAINED = "trained", "Trained here"
        REGISTERED = "registered", "Registered by an admin"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.POLICY)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REGISTERED)
    # A local directory, or a hub id where the deployment has internet.
    path = models.CharField(max_length=1000)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    training_run = models.ForeignKey(
        "sampler.TrainingRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="output_versions",
    )
    metrics = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Exactly one policy is served at a time (promotion swaps it atomically).
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True), name="one_active_version_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class GenerationJob(models.Model):
    """A request for ``n`` completions of one conversation prefix from one model version."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    class Purpose(models.TextChoices):
        SUGGESTION = "suggestion", "Suggestions while writing"
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
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    error = models.TextField(blank=True)
    notes = models.TextField(blank=True, help_text="E.g. how much of the prefix was truncated.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="generation_jobs",
    )
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(n__gte=1) & Q(n__lte=64), name="job_n_in_range"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status}, n={self.n})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}


class Sample(models.Model):
    class FinishReason(models.TextChoices):
        END_OF_TURN = "end_of_turn", "End of turn"
        LENGTH = "length", "Hit max_new_tokens"

    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="samples")
    index = models.PositiveSmallIntegerField()
    text = models.TextField()
    token_count = models.PositiveIntegerField()
    finish_reason = models.CharField(max_length=16, choices=FinishReason.choices)
    logprob_sum = models.FloatField(help_text="Sum of the sampled tokens' log-probabilities.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [
            # A task that runs twice for the same job cannot store its samples twice.
            models.UniqueConstraint(fields=["job", "index"], name="sample_unique_per_job_index"),
        ]

    def __str__(self) -> str:
        return f"Sample {self.job_id}#{self.index}"


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        SFT = "sft", "Supervised fine-tuning"
        REWARD = "reward", "Reward model"
        PPO = "ppo", "PPO"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
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
    error = models.TextField(blank=True)
    # The ModelVersion a successful run registers (it links back through `training_run`).
    output_name = models.CharField(max_length=200, blank=True)
    # Resumable state (weights, optimizer, step) kept while the run is unfinished.
    checkpoint_dir = models.CharField(max_length=1000, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # Refreshed while training: a running run whose heartbeat stopped lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="training_runs",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}


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


class ModelComparison(models.Model):
    """A head-to-head of two policy versions: replies to the same held-out prompts, judged by a
    reward model (win rate of ``version_a``); computed by a worker."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    version_a = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    reward_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    # Prompt filters, prompt count and sampling settings, as used.
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    # Wins, ties, win rate, mean scores / lengths / end-of-turn rates, a few examples.
    results = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="model_comparisons",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(version_a=models.F("version_b")), name="comparison_of_two_versions"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version_a} vs {self.version_b} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}


# Worker heartbeats live in their feature package; imported here so Django finds the model.
from sampler.workers.models import WorkerHeartbeat  # noqa: E402, F401
