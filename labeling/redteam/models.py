"""Red-teaming: successful attacks on model replies, and re-runs of them against a policy."""

from django.conf import settings
from django.db import models

from labeling.conversations.models import Conversation, Message
from labeling.guidelines.models import guideline_version_key
from ranking.projects.models import project_key
from sampler.jobs.models import Job, job_indexes, job_requester, progress_fraction


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
    guideline_version = guideline_version_key("+")
    correction = models.OneToOneField(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="correction_of"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="attacks"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    project = project_key("attacks")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "category"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return f"Attack {self.pk} ({self.category})"


class AttackRun(Job):
    """Stored attack prompts re-sent to one policy version, scored by the content filter and
    the reward model that was active when the run started (a job run by the executor)."""

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
    attack_count = models.PositiveIntegerField(default=0)
    progress = models.FloatField(default=0.0)
    seed = models.BigIntegerField()
    params = models.JSONField(default=dict, blank=True)
    filter_name = models.CharField(max_length=200, blank=True)
    requested_by = job_requester("attack_runs")
    project = project_key("attack_runs")
    # The succeeded run whose failed attacks (results with an error) this run re-sends
    # (``attack_run_retry_failed``); at most one retry per run.
    retry_of = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retry"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = job_indexes("attackrun")
        constraints = [progress_fraction("attack_run_progress")]

    def __str__(self) -> str:
        return f"Attack run {self.pk} against {self.model_version_id} ({self.status})"


class AttackRunAttack(models.Model):
    """One attack of a run's set, fixed when the run is asked for: a resumed run re-sends these
    (an attack withdrawn since leaves the set with its row), never attacks it did not have."""

    run = models.ForeignKey(AttackRun, on_delete=models.CASCADE, related_name="entries")
    attack = models.ForeignKey(Attack, on_delete=models.CASCADE, related_name="run_entries")
    # The job generating this attack's reply (the latest one the run made): a run resumed after
    # its worker stopped runs it, or uses its sample, rather than generating the reply again.
    generation_job = models.ForeignKey(
        "sampler.GenerationJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "attack"], name="attack_run_attack_once"),
        ]

    def __str__(self) -> str:
        return f"Attack {self.attack_id} of run {self.run_id}"


class AttackResult(models.Model):
    """What one policy version answered to one stored attack prompt in one run.

    A run that succeeded is a record: an attack withdrawn afterwards leaves its result there
    (``attack`` None), with the category and prompt it had, kept here when the result was made.
    """

    run = models.ForeignKey(AttackRun, on_delete=models.CASCADE, related_name="results")
    # None: the attack was withdrawn after the run succeeded.
    attack = models.ForeignKey(
        Attack, null=True, blank=True, on_delete=models.SET_NULL, related_name="results"
    )
    category = models.CharField(max_length=16, choices=Attack.Category.choices, blank=True)
    # The last user turn of the prompt sent.
    prompt = models.TextField(blank=True)
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
    # The error is a refusal of the request for what it asks (a prompt longer than the model's
    # context or than a generation prefix may hold, a turn the engine cannot write): sent again
    # as it is, it would be refused again, so a retry of the run's failed attacks leaves it out.
    # False for any other failure (a crash, the model's server failing), and for
    # errors recorded before refusals were told apart: those are retried.
    error_permanent = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "attack"]
        constraints = [
            models.UniqueConstraint(fields=["run", "attack"], name="attack_result_once_per_run"),
        ]

    def __str__(self) -> str:
        return f"Result of attack {self.attack_id} in run {self.run_id}"
