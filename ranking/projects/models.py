"""Projects (campaigns): each has its own policy, K, overlap, sampling, trainers and targets;
every task, ranking, conversation, feedback item, job and export belongs to one."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from config.text import validate_one_line

DEFAULT_PROJECT_SLUG = "default"


class Project(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        DONE = "done", "Done"

    class Selection(models.TextChoices):
        RANDOM = "random", "Random"
        UNCERTAINTY = "uncertainty", "Where the reward models disagree"

    # One line, as it is read in menus, lists and the Projects table (config.text).
    name = models.CharField(max_length=200, unique=True, validators=[validate_one_line])
    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True, max_length=5000)
    guideline_url = models.URLField(blank=True, help_text="Where the project's guideline lives.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    # K alternatives sampled per task (the task has K+1 candidates), N rankers per task and
    # the pool size; empty: the site's RANKING_ALTERNATIVES, RANKING_OVERLAP, RANKING_POOL_SIZE.
    alternatives = models.PositiveSmallIntegerField(null=True, blank=True)
    overlap = models.PositiveSmallIntegerField(null=True, blank=True)
    sampling_params = models.JSONField(
        default=dict, blank=True, help_text="Generation parameters (temperature, top_p, ...)."
    )
    pool_size = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Tasks kept ready or being prepared."
    )
    # Empty: every trainer may rank in the project.
    trainer_groups = models.ManyToManyField("auth.Group", blank=True, related_name="projects")
    target_rankings = models.PositiveIntegerField(default=0, help_text="0: no target.")
    deadline = models.DateTimeField(null=True, blank=True)
    # Quality control: the share of a trainer's stream that is gold, and qualification.
    gold_rate = models.FloatField(default=0.0)
    qualification_required = models.BooleanField(default=False)
    qualification_tasks = models.PositiveSmallIntegerField(default=5)
    qualification_threshold = models.FloatField(default=0.8)
    # What to offer for ranking: random tasks, or those the reward models disagree on most.
    selection = models.CharField(max_length=16, choices=Selection.choices, default=Selection.RANDOM)
    exploration_share = models.FloatField(default=0.25)
    candidate_factor = models.PositiveSmallIntegerField(
        default=3, help_text="Uncertainty selection prepares this many times the pool."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Why the last fill of the project's pool failed (its max_new_tokens above a generation cap
    # lowered since, ...); empty: it did not. Shown to staff on the project's page; written by
    # the fill alone.
    pool_error = models.TextField(blank=True, default="", db_default="", editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            # A name or slug is one project's whatever its letter case ("uni" and "UNI" would
            # read as one in lists and links): the services say which project has it.
            models.UniqueConstraint(
                Lower("name"),
                name="project_name_unique_any_case",
                violation_error_message="Another project has this name (letter case aside).",
            ),
            models.UniqueConstraint(
                Lower("slug"),
                name="project_slug_unique_any_case",
                violation_error_message="Another project has this slug (letter case aside).",
            ),
            models.CheckConstraint(
                condition=Q(alternatives__gte=1) & Q(overlap__gte=1),
                name="project_k_and_n_positive",
            ),
            models.CheckConstraint(
                condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_share"
            ),
            models.CheckConstraint(
                condition=Q(qualification_threshold__gte=0) & Q(qualification_threshold__lte=1),
                name="project_threshold_share",
            ),
            models.CheckConstraint(
                condition=Q(exploration_share__gte=0) & Q(exploration_share__lte=1),
                name="project_exploration_share",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ProjectPolicy(models.Model):
    """A policy version the project samples from, with its weight (share of new tasks)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="policies")
    model_version = models.ForeignKey(
        "sampler.ModelVersion", on_delete=models.PROTECT, related_name="project_policies"
    )
    weight = models.FloatField(default=1.0)

    class Meta:
        ordering = ["project", "pk"]
        verbose_name_plural = "project policies"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "model_version"], name="project_policy_once"
            ),
            models.CheckConstraint(
                condition=Q(weight__gt=0), name="project_policy_weight_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version_id} x{self.weight} in {self.project_id}"


def project_default_id() -> int:
    """The default project's id (created on first use): rows made without naming a project
    belong to it, as the data that existed before projects does. Reads its id alone: rows
    written while the schema is older than this code (a migration's historical models take
    this default too) read no column added since."""
    found = Project.objects.filter(slug=DEFAULT_PROJECT_SLUG).values_list("pk", flat=True).first()
    if found is not None:
        return found
    project, _ = Project.objects.get_or_create(
        slug=DEFAULT_PROJECT_SLUG,
        defaults={"name": "Default project", "status": Project.Status.ACTIVE},
    )
    return project.pk


def project_key(related_name: str) -> models.ForeignKey:
    """The project (campaign) a row belongs to; a row made without one belongs to the default
    project. A project with rows cannot be deleted."""
    return models.ForeignKey(
        "ranking.Project",
        null=True,
        blank=True,
        default=project_default_id,
        on_delete=models.PROTECT,
        related_name=related_name,
    )
