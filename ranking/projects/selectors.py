"""Reads of projects: which a trainer may rank in, the policy a new task samples from, and
progress with an ETA."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from config.querysets import ids_existing, ids_named, transaction_lock
from config.text import text_problem
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, project_default_id
from ranking.rank.models import source_finished
from sampler.generation.params import context_room_error
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active

# Where a trainer's choice of project (a slug; empty: all their projects) is kept.
CHOSEN_PROJECT_SESSION_KEY = "ranking_project"

# The window the ranking rate (and so the ETA) is measured over.
RATE_WINDOW = timedelta(days=7)

# The lock under which projects' max_new_tokens and the contexts of the policies they sample
# from are checked against each other (``sampling_context_lock``).
SAMPLING_CONTEXT_LOCK = "tandem.sampling-context"


def project_default() -> Project:
    return Project.objects.get(pk=project_default_id())


def project_list() -> QuerySet[Project]:
    return Project.objects.order_by("name")


def projects_active() -> QuerySet[Project]:
    return Project.objects.filter(status=Project.Status.ACTIVE).order_by("pk")


def projects_for_trainer(*, trainer: AbstractBaseUser) -> QuerySet[Project]:
    """Active projects the trainer may rank in: those with no trainer group, and those naming
    one of the trainer's groups (admins rank anywhere)."""
    projects = Project.objects.filter(status=Project.Status.ACTIVE)
    if trainer.is_staff:
        return projects.order_by("name")
    return (
        projects.filter(Q(trainer_groups__isnull=True) | Q(trainer_groups__user=trainer))
        .distinct()
        .order_by("name")
    )


def project_ids_open_to_all(*, drafts: bool = True) -> tuple[int, ...]:
    """The ids of the projects that name no trainer group (every trainer may see their data),
    in id order; ``drafts`` False: not those still drafts (not yet started)."""
    projects = Project.objects.filter(trainer_groups__isnull=True)
    if not drafts:
        projects = projects.exclude(status=Project.Status.DRAFT)
    return tuple(projects.order_by("pk").values_list("pk", flat=True))


def project_for_trainer(*, trainer: AbstractBaseUser, slug: str) -> Project | None:
    """The active project ``slug`` (in any letter case: slugs are unique in any case) when the
    trainer may rank in it, else None (also for a slug no project can have: one with NUL or an
    unpaired surrogate, which the database refuses)."""
    if text_problem(slug):
        return None
    return projects_for_trainer(trainer=trainer).filter(slug__iexact=slug).first()


def project_chosen_closed(*, trainer: AbstractBaseUser, slug: str) -> str:
    """The name of the project ``slug`` a trainer chose to rank in when it is no longer open to
    them (paused, done, or not open to their groups); "" when it is open, or none is chosen."""
    if not slug or project_for_trainer(trainer=trainer, slug=slug) is not None:
        return ""
    return Project.objects.filter(slug__iexact=slug).values_list("name", flat=True).first() or slug


def project_ids_by_slug(*, slugs: list[str]) -> tuple[int, ...]:
    """The ids of the projects named by slug, in any letter case (slugs are unique in any
    case); ValidationError naming any that is unknown."""
    return ids_named(
        Project.objects.all(), "slug", slugs, what="project", key="project", any_case=True
    )


def project_ids_existing(*, ids: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``ids`` when each names a project; ValidationError naming those that do not."""
    return ids_existing(Project.objects.all(), ids, what="project", key="project_id")


def project_alternatives(project: Project) -> int:
    return project.alternatives or settings.RANKING_ALTERNATIVES


def project_overlap(project: Project) -> int:
    return project.overlap or settings.RANKING_OVERLAP


def project_pool_size(project: Project) -> int:
    return settings.RANKING_POOL_SIZE if project.pool_size is None else project.pool_size


def project_policy_pick(*, project: Project, rng: random.Random) -> ModelVersion | None:
    """A policy the project names, drawn by weight; None: the globally active version."""
    policies = list(project.policies.select_related("model_version").order_by("pk"))
    if not policies:
        return None
    chosen = rng.choices(policies, weights=[policy.weight for policy in policies])[0]
    return chosen.model_version


def projects_affected_by_promotion() -> QuerySet[Project]:
    """Projects that name no policy sample from the active version: a promotion moves them."""
    return Project.objects.filter(policies__isnull=True).exclude(status=Project.Status.DONE)


def sampling_context_lock() -> None:
    """Hold, until this transaction ends, every other transaction that checks projects'
    ``max_new_tokens`` against the contexts of the policies they sample from: a project's save
    (before ``sampling_context_error``), a policy's activation and a change of a version's
    context (before ``projects_context_errors``: a promotion, the default policy's, the API's
    and the admin's serving changes). Each takes it before it reads what it checks, so the
    second sees what the first committed; otherwise each read the other's state from before
    it, both passed, and the project was left with a limit its policy has no room for. One
    lock, not the version rows: with no policy active there is no row both could lock. Taken
    before any lock on a version's row, so a holder of one never waits for it (a deadlock)."""
    transaction_lock(SAMPLING_CONTEXT_LOCK)


def sampling_context_error(
    *, project: Project, policies: list[ModelVersion] | None = None
) -> str | None:
    """Why the project's ``max_new_tokens`` leaves no room for a prompt in the context of a
    version its pool samples from: each of ``policies`` (None: the policies saved for it), or
    the active policy where it names none. In the generation service's words (which would
    refuse each of its tasks' jobs so), led by the version's name as a comparison's are. None:
    it fits, or the project sets no limit (its tasks then take one that fits)."""
    params = project.sampling_params if isinstance(project.sampling_params, dict) else {}
    tokens = params.get("max_new_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool):
        return None
    if policies is None:
        policies = (
            [policy.model_version for policy in project.policies.select_related("model_version")]
            if project.pk
            else []
        )
    versions = policies or [version for version in [model_version_active()] if version]
    problems = [
        problem
        for version in dict.fromkeys(versions)
        if (
            problem := context_room_error(
                context_length=version.context_length,
                max_new_tokens=tokens,
                version_name=version.name,
            )
        )
    ]
    return " ".join(problems) or None


def projects_context_errors(*, version: ModelVersion, active: bool) -> list[tuple[Project, str]]:
    """The projects (not done) whose ``max_new_tokens`` leaves no room for a prompt in the
    context of ``version`` as it stands here (its ``context_length`` as it is to be saved),
    which their pools would sample from, each with ``sampling_context_error``'s reason (the
    check a project's save makes): those naming it a policy and, where it is (or is to be) the
    active policy, those naming none."""
    if version.kind != ModelVersion.Kind.POLICY:
        return []
    projects = Project.objects.none()
    if version.pk is not None:
        projects = Project.objects.filter(policies__model_version=version.pk).exclude(
            status=Project.Status.DONE
        )
    if active:
        projects = projects | projects_affected_by_promotion()
    limited = projects.filter(sampling_params__has_key="max_new_tokens").distinct().order_by("pk")
    return [
        (project, problem)
        for project in limited
        if (problem := sampling_context_error(project=project, policies=[version]))
    ]


@dataclass(frozen=True)
class ProjectProgress:
    project: Project
    rankings: int
    target: int
    tasks_ready: int
    tasks_preparing: int
    tasks_complete: int
    rate_per_day: float
    # Uncertainty selection: prepared tasks waiting to be chosen (the extra generation).
    tasks_held: int
    # When the target is reached at the rate of the last week (None: reached, no target, or
    # no ranking in the last week).
    eta: datetime | None
    # The target not reached and the deadline passed, or the ETA after the deadline.
    late: bool

    @property
    def percent(self) -> float | None:
        return None if not self.target else min(100.0, 100.0 * self.rankings / self.target)


def project_progress(*, project: Project, now: datetime | None = None) -> ProjectProgress:
    """Rankings against the target, and when the target is reached at the last week's rate.
    Gold copies are not data (no export holds their rankings): neither their rankings nor the
    copies themselves count; nor do the tasks of a conversation reopened or discarded, nor
    their rankings (``source_finished``: no claim offers them, no export holds them), until it
    is finished again."""
    now = now or timezone.now()
    rankings = project.rankings.filter(source_finished("task__"), task__gold_ordering__isnull=True)
    total = rankings.count()
    start = now - RATE_WINDOW
    if project.created_at is not None and project.created_at > start:
        # A project younger than the window: its rate since it was made.
        start = project.created_at
    recent_count = rankings.filter(submitted_at__gte=start).count()
    rate = 0.0
    if recent_count:
        span = max(now - start, timedelta(hours=1))
        rate = recent_count / (span / timedelta(days=1))
    eta = None
    never = False  # at this rate, not before the calendar ends (no date to give)
    behind = bool(project.target_rankings) and total < project.target_rankings
    if behind and rate > 0:
        try:
            eta = now + timedelta(days=(project.target_rankings - total) / rate)
        except OverflowError:
            never = True
    deadline = project.deadline
    late = (
        behind
        and deadline is not None
        and (now > deadline or never or (eta is not None and eta > deadline))
    )
    tasks = project.ranking_tasks.filter(source_finished(), gold_ordering__isnull=True).aggregate(
        ready=Count("id", filter=Q(status="ready", held_back=False)),
        held=Count("id", filter=Q(status="ready", held_back=True)),
        preparing=Count("id", filter=Q(status="preparing")),
        complete=Count("id", filter=Q(status="complete")),
    )
    return ProjectProgress(
        project=project,
        rankings=total,
        target=project.target_rankings,
        tasks_ready=tasks["ready"],
        tasks_preparing=tasks["preparing"],
        tasks_complete=tasks["complete"],
        tasks_held=tasks["held"],
        rate_per_day=rate,
        eta=eta,
        late=late,
    )


def project_slug_is_default(project: Project) -> bool:
    return project.slug == DEFAULT_PROJECT_SLUG


def projects_open_to(*, user: AbstractBaseUser) -> QuerySet[Project]:
    """The projects whose guidelines ``user`` may see, by name: admins every project, trainers
    those with no trainer group or one of theirs once they have opened (active, paused or done:
    a paused or done project's guidelines are those the trainer's work there was done under; a
    draft's are still being prepared, as the project is)."""
    projects = Project.objects.all()
    if not user.is_staff:
        projects = projects.exclude(status=Project.Status.DRAFT).filter(
            Q(trainer_groups__isnull=True) | Q(trainer_groups__user=user)
        )
    return projects.distinct().order_by("name")


def project_open_to(*, user: AbstractBaseUser, slug: str) -> Project | None:
    """The project ``slug`` (in any letter case) when ``user`` may see it, else None."""
    return projects_open_to(user=user).filter(slug__iexact=slug).first()
