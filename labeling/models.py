from django.conf import settings
from django.db import models
from django.db.models import Q


class Conversation(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "In progress"
        FINISHED = "finished", "Finished"
        DISCARDED = "discarded", "Discarded"

    class Source(models.TextChoices):
        WRITTEN = "written", "Written in the app"
        IMPORTED = "imported", "Imported"

    class Mode(models.TextChoices):
        NORMAL = "normal", "Normal: write good demonstrations"
        RED_TEAM = "red_team", "Red team: make the model misbehave"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    instructions = models.TextField(
        blank=True, max_length=4000, help_text="Optional topic or instructions for the writer."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.WRITTEN)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.NORMAL)
    # The leaf of the branch the editor shows; switching siblings moves it.
    active_leaf = models.ForeignKey(
        "labeling.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [
            models.Index(fields=["owner", "status", "-updated_at"]),
            models.Index(fields=["status", "-updated_at"]),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("labeling:editor", kwargs={"conversation_id": self.pk})


class Message(models.Model):
    """One turn. Messages form a tree: siblings (same parent) are alternative turns."""

    class Role(models.TextChoices):
        SYSTEM = "system", "System"
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"

    class Origin(models.TextChoices):
        HUMAN = "human", "Written by a human"
        MODEL = "model", "Written by a model"
        MODEL_EDITED = "model_edited", "Model suggestion edited by a human"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(max_length=20000)
    origin = models.CharField(max_length=16, choices=Origin.choices, default=Origin.HUMAN)
    # Provenance of model-written text: the sample it came from (model version, params, seed
    # live on the sample's job) and how far the saved text moved from it.
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
    )
    edit_distance = models.PositiveIntegerField(null=True, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    # The labeling guidelines in force when the message was written (empty for older rows).
    guideline_version = models.ForeignKey(
        "labeling.GuidelineVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="messages",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["conversation", "parent"]),
            models.Index(fields=["role", "origin"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(origin="human") | Q(sample__isnull=True),
                name="message_human_origin_has_no_sample",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class Draft(models.Model):
    """Text a trainer is typing, saved as they type so a reload or a crash loses nothing.

    One draft for the composer (``editing`` empty) and one per message being edited into a branch.
    """

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="drafts")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="drafts"
    )
    editing = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="edit_drafts"
    )
    content = models.TextField(blank=True, max_length=20000)
    # The suggestion the trainer put into the editor, if any, and the pending suggestion job.
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    suggestion_job = models.ForeignKey(
        "sampler.GenerationJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "author"],
                condition=Q(editing__isnull=True),
                name="draft_one_composer_per_author",
            ),
            models.UniqueConstraint(
                fields=["conversation", "author", "editing"],
                condition=Q(editing__isnull=False),
                name="draft_one_per_edited_message",
            ),
        ]

    def __str__(self) -> str:
        return f"Draft by {self.author_id} in {self.conversation_id}"


class Feedback(models.Model):
    """One trainer's opinion of one model-written message or one sample: thumbs, a report, and
    whether the content filter got it wrong. One per user and target, edited in place."""

    class Rating(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    class Category(models.TextChoices):
        HARMFUL = "harmful", "Harmful"
        UNTRUTHFUL = "untruthful", "Untruthful"
        BIASED = "biased", "Biased"
        REFUSES_WRONGLY = "refuses_wrongly", "Refuses wrongly"
        OTHER = "other", "Other"

    class FilterReport(models.TextChoices):
        FALSE_POSITIVE = "false_positive", "Flagged by the filter, but it is fine"
        FALSE_NEGATIVE = "false_negative", "Not flagged by the filter, but it should be"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    # The model that wrote the target, copied so counts per model version need no joins.
    model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback",
    )
    rating = models.CharField(max_length=8, choices=Rating.choices, blank=True)
    # Report categories, a list of Category values (empty: no report).
    categories = models.JSONField(default=list, blank=True)
    comment = models.TextField(max_length=2000, blank=True)
    filter_report = models.CharField(max_length=16, choices=FilterReport.choices, blank=True)
    # The filter result a filter report disputes (its filter name and version count it).
    moderation = models.ForeignKey(
        "sampler.ModerationResult",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="filter_reports",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "updated_at"]),
            models.Index(fields=["filter_report"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(message__isnull=True, sample__isnull=False)
                | Q(message__isnull=False, sample__isnull=True),
                name="feedback_has_exactly_one_target",
            ),
            models.UniqueConstraint(
                fields=["user", "message"],
                condition=Q(message__isnull=False),
                name="feedback_one_per_user_and_message",
            ),
            models.UniqueConstraint(
                fields=["user", "sample"],
                condition=Q(sample__isnull=False),
                name="feedback_one_per_user_and_sample",
            ),
            models.CheckConstraint(
                condition=Q(filter_report="") | Q(moderation__isnull=False),
                name="feedback_filter_report_names_its_result",
            ),
        ]

    def __str__(self) -> str:
        target = f"message {self.message_id}" if self.message_id else f"sample {self.sample_id}"
        return f"Feedback by {self.user_id} on {target}"


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


class Attack(models.Model):
    """A model reply in a red-team conversation that the trainer marked "attack succeeded".

    The corrected reply the trainer then wrote (a sibling branch) is ``correction``: together
    they are one demonstration and one preference pair (correction chosen, reply rejected).
    """

    class Category(models.TextChoices):
        JAILBREAK = "jailbreak", "Jailbreak (ignored its rules)"
        HARMFUL = "harmful", "Harmful content"
        FALSE = "false", "False or made-up answer"
        PRIVACY = "privacy", "Privacy leak"
        OTHER = "other", "Other"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attacks")
    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="attack")
    # The user turn the reply answers, and the whole prefix as the model saw it (re-runs send
    # exactly this).
    prompt_message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="attacks_as_prompt"
    )
    prompt_messages = models.JSONField(default=list)
    category = models.CharField(max_length=16, choices=Category.choices)
    note = models.TextField(max_length=2000, blank=True)
    model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="attacks",
    )
    guideline_version = models.ForeignKey(
        GuidelineVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    correction = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="correction_of"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="attacks"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "category"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"Attack {self.pk} ({self.category})"


class AttackRun(models.Model):
    """Stored attack prompts re-sent to one policy version, scored by the content filter and
    the reward model that was active when the run started."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    model_version = models.ForeignKey(
        "sampler.ModelVersion", on_delete=models.PROTECT, related_name="attack_runs"
    )
    reward_model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="attack_runs_scored",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attack_count = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    seed = models.BigIntegerField()
    params = models.JSONField(default=dict, blank=True)
    filter_name = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="attack_runs",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0) & Q(progress__lte=1), name="attack_run_progress"
            ),
        ]

    def __str__(self) -> str:
        return f"Attack run {self.pk} against {self.model_version_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED}


class AttackResult(models.Model):
    """What one policy version answered to one stored attack prompt in one run."""

    run = models.ForeignKey(AttackRun, on_delete=models.CASCADE, related_name="results")
    attack = models.ForeignKey(Attack, on_delete=models.CASCADE, related_name="results")
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    text = models.TextField(blank=True)
    # None: no content filter configured.
    filter_flagged = models.BooleanField(null=True)
    filter_categories = models.JSONField(default=list, blank=True)
    # None: no reward model was active.
    reward_score = models.FloatField(null=True, blank=True)
    # The same reward model on the stored failed reply and on the trainer's correction, so a
    # new reply can be read against both.
    failed_reply_reward_score = models.FloatField(null=True, blank=True)
    correction_reward_score = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "attack"]
        constraints = [
            models.UniqueConstraint(fields=["run", "attack"], name="attack_result_once_per_run"),
        ]

    def __str__(self) -> str:
        return f"Result of attack {self.attack_id} in run {self.run_id}"
