"""Writes of projects: creating and changing a campaign, with its policies and trainer groups."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Lower

from config.querysets import saved_or_refused, saved_row_locked
from ranking.projects.limits import (
    MAX_ALTERNATIVES,
    MAX_CANDIDATE_FACTOR,
    MAX_OVERLAP,
    MAX_POOL_SIZE,
    MAX_QUALIFICATION_TASKS,
    MAX_TARGET_RANKINGS,
)
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, ProjectPolicy
from ranking.projects.selectors import sampling_context_error, sampling_context_lock
from sampler.generation.services import generation_params_validate
from sampler.registry.models import ModelVersion

MAX_POLICIES = 16
# Relative weights: a bound keeps their sum finite (a draw over infinite weights fails).
MAX_POLICY_WEIGHT = 1e6

EDITABLE = (
    "name",
    "slug",
    "description",
    "guideline_url",
    "status",
    "alternatives",
    "overlap",
    "sampling_params",
    "pool_size",
    "target_rankings",
    "deadline",
    "gold_rate",
    "qualification_required",
    "qualification_tasks",
    "qualification_threshold",
    "selection",
    "exploration_share",
    "candidate_factor",
)


# The range of each numeric setting (None: no upper bound), with the sentence a value outside
# it gets: the service, the page's form, the Django admin, the API and the database's
# constraints agree on them (a project saved on one is accepted back by the others).
LIMITS: dict[str, tuple[float, float | None, str]] = {
    "alternatives": (1, MAX_ALTERNATIVES, f"K must be between 1 and {MAX_ALTERNATIVES}."),
    "overlap": (1, MAX_OVERLAP, f"The overlap must be between 1 and {MAX_OVERLAP}."),
    "pool_size": (0, MAX_POOL_SIZE, f"The pool holds 0 to {MAX_POOL_SIZE} tasks."),
    "target_rankings": (
        0,
        MAX_TARGET_RANKINGS,
        f"The target is 0 (none) to {MAX_TARGET_RANKINGS:,} rankings.",
    ),
    "qualification_tasks": (
        1,
        MAX_QUALIFICATION_TASKS,
        f"Qualification takes 1 to {MAX_QUALIFICATION_TASKS} gold tasks.",
    ),
    "candidate_factor": (
        1,
        MAX_CANDIDATE_FACTOR,
        f"candidate_factor is between 1 and {MAX_CANDIDATE_FACTOR}.",
    ),
    **{
        name: (0.0, 1.0, f"{name} is a share between 0 and 1.")
        for name in ("gold_rate", "qualification_threshold", "exploration_share")
    },
}


def limit_errors(values: dict) -> dict[str, str]:
    """The sentence of each setting in ``values`` outside its ``LIMITS`` (None: not set)."""
    errors = {}
    for name, (least, most, message) in LIMITS.items():
        value = values.get(name)
        if value is not None and not (least <= value and (most is None or value <= most)):
            errors[name] = message
    return errors


def project_clash_errors(*, name: str, slug: str, pk: int | None) -> dict[str, str]:
    """The name and slug of ``name`` and ``slug`` that another project (not ``pk``) has,
    letter case aside (the database refuses both), each with a sentence naming that project's."""
    others = Project.objects.exclude(pk=pk) if pk is not None else Project.objects.all()
    errors = {}
    for field, value in (("name", name), ("slug", slug)):
        if not isinstance(value, str) or not value:
            continue
        # Folded as the constraints fold (Lower, not iexact's UPPER): letters whose lower and
        # upper cases do not map back (the Kelvin sign, a dotted capital I) clash as they do.
        taken = (
            others.alias(folded=Lower(field))
            .filter(folded=Lower(Value(value)))
            .values_list(field, flat=True)
            .first()
        )
        if taken is None:
            continue
        case = "" if taken == value else f"; {field}s that differ only in letter case are one"
        errors[field] = f"A project with the {field} {taken!r} already exists{case}."
    return errors


def project_setting_errors(
    *,
    project: Project,
    stored_slug: str | None,
    policies: list[ModelVersion] | None = None,
    sampling_changed: bool = True,
    context_checked: bool = True,
) -> dict[str, str]:
    """The services' sentence for each setting of ``project`` they refuse, by field (its
    sampling parameters normalised in place); ``stored_slug``: its slug as saved (None: a new
    project); ``policies``: the versions it is to sample from (None: those saved for it). The
    Django admin checks its forms with it too; ``context_checked`` False leaves the context
    to ``project_context_error`` called apart (the admin's inline of the policies posted
    beside the project, read once the project's form is).

    ``sampling_changed`` False (a save that changes neither the sampling parameters nor the
    versions sampled from): those are not checked. What held when they were saved may not
    hold now (the cap lowered since, a version's context corrected), and the project must
    still be paused or described; its pool fills say why they fail (``pool_error``).

    Checking them takes ``sampling_context_lock`` until the caller's transaction ends (the one
    that saves the project), and reads the versions' contexts as they are then: a promotion or
    a context change under way is waited for, and one started later waits for the save and
    then checks the project as saved."""
    errors = limit_errors({name: getattr(project, name) for name in LIMITS})
    if stored_slug == DEFAULT_PROJECT_SLUG and project.slug != DEFAULT_PROJECT_SLUG:
        # Rows made without a project find the default one by this slug.
        errors["slug"] = f"The default project keeps its slug, {DEFAULT_PROJECT_SLUG!r}."
    if not sampling_changed:
        return errors
    try:
        project.sampling_params = generation_params_validate(params=project.sampling_params)
    except ValidationError as error:
        errors["sampling_params"] = "; ".join(error.messages)
    else:
        if context_checked and (
            problem := project_context_error(project=project, policies=policies)
        ):
            errors["sampling_params"] = problem
    return errors


def project_context_error(
    *, project: Project, policies: list[ModelVersion] | None = None
) -> str | None:
    """``sampling_context_error`` of ``project`` as a save checks it (``project_setting_errors``):
    under ``sampling_context_lock`` until the caller's transaction ends, with ``policies`` (the
    versions it is to sample from; None: those saved for it) read again as they are then. None
    also where its sampling parameters are refused (``project_setting_errors`` says why)."""
    try:
        generation_params_validate(params=project.sampling_params)
    except ValidationError:
        return None
    sampling_context_lock()
    if policies is not None:
        # As they are now: a context changed since the caller read them is the one checked.
        current = ModelVersion.objects.in_bulk([version.pk for version in policies])
        policies = [current.get(version.pk, version) for version in policies]
    return sampling_context_error(project=project, policies=policies)


def project_policy_error(*, version: ModelVersion, weight: object) -> str | None:
    """Why ``version`` with ``weight`` cannot be one of a project's policies (None: it can)."""
    if version.kind != ModelVersion.Kind.POLICY:
        return f"{version.name} is not a policy."
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not 0 < weight <= MAX_POLICY_WEIGHT
    ):
        return f"Every policy weight is a number above 0, at most {MAX_POLICY_WEIGHT:g}."
    return None


def _check(
    project: Project,
    *,
    stored_slug: str | None = None,
    policies: list[tuple[ModelVersion, float]] | None = None,
    sampling_changed: bool = True,
) -> None:
    versions = None if policies is None else [version for version, _ in policies]
    errors = project_clash_errors(name=project.name, slug=project.slug, pk=project.pk)
    errors |= project_setting_errors(
        project=project,
        stored_slug=stored_slug,
        policies=versions,
        sampling_changed=sampling_changed,
    )
    try:
        # A field refused already is not checked again (a clash would be said twice: once
        # naming the project that has it, once as the database constraint's).
        project.full_clean(exclude=["created_by", *errors])
    except ValidationError as error:
        for field, messages in error.message_dict.items():
            errors.setdefault(field, " ".join(messages))
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def project_save(*, project: Project, fields: list[str] | None = None) -> Project:
    """Save ``project`` as a caller that checked it left it (the services' ``_check``, the
    admin's form): only ``fields`` when given (the admin's form's: the row was read at the start
    of the request, and writing all of it back would undo what a worker wrote meanwhile, a
    pool fill's ``pool_error``). A name or slug that another save took since the check (two
    admins at once: the check saw it free, the table not) is that field's ValidationError, as
    the check words it (``project_clash_errors``), and nothing is saved (``saved_or_refused``).
    A saved project deleted since it was read is Project.DoesNotExist, nothing saved (nor the
    project made again)."""
    if project.pk is not None:
        saved_row_locked(project)
    saved_or_refused(
        lambda: project.save(update_fields=fields),
        lambda: project_clash_errors(name=project.name, slug=project.slug, pk=project.pk),
    )
    return project


def _set_policies(project: Project, policies: Iterable[tuple[ModelVersion, float]]) -> None:
    policies = list(policies)
    if len(policies) > MAX_POLICIES:
        raise ValidationError({"policies": f"At most {MAX_POLICIES} policies per project."})
    # Read as they are now and locked: a version made a reward model since the caller read it
    # is refused, and a kind change started later waits and then finds it a project's policy.
    saved = (
        ModelVersion.objects.select_for_update()
        .order_by("pk")
        .in_bulk([version.pk for version, _ in policies])
    )
    seen = set()
    for given, weight in policies:
        version = saved.get(given.pk)
        if version is None:
            raise ValidationError({"policies": f"{given.name} was deleted."})
        if error := project_policy_error(version=version, weight=weight):
            raise ValidationError({"policies": error})
        if version.pk in seen:
            raise ValidationError({"policies": f"{version.name} is named twice."})
        seen.add(version.pk)
    project.policies.all().delete()
    ProjectPolicy.objects.bulk_create(
        [
            ProjectPolicy(project=project, model_version=version, weight=float(weight))
            for version, weight in policies
        ]
    )


# Work made without a project (a conversation, an import, a comparison) lands in the default
# project, for every trainer: it cannot be kept for some groups.
DEFAULT_PROJECT_OPEN = (
    "The default project is open to every trainer (work made without a project lands in it): "
    "make a project of its own for these groups."
)


def project_lock(*, project_id: int) -> None:
    """Lock the project's row until the transaction ends, for work that must take turns per
    project (a guidelines save, a pool fill, a failed preparation's retry). "No key": rows
    that refer to the project (tasks, rankings, conversations written meanwhile) are not made
    to wait, as a plain FOR UPDATE would make them; the lockers still wait for each other."""
    list(Project.objects.select_for_update(no_key=True).filter(pk=project_id).values_list("pk"))


@transaction.atomic
def project_create(
    *,
    name: str,
    slug: str,
    created_by: AbstractBaseUser | None = None,
    policies: Iterable[tuple[ModelVersion, float]] = (),
    trainer_groups: Iterable[Group] = (),
    **fields: object,
) -> Project:
    """A new project (a draft unless ``status`` says otherwise); ValidationError on bad input."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError({"fields": f"Unknown project fields: {', '.join(sorted(unknown))}."})
    project = Project(name=name, slug=slug, created_by=created_by, **fields)
    policies = list(policies)
    _check(project, policies=policies)
    project_save(project=project)
    _set_policies(project, policies)
    project.trainer_groups.set(list(trainer_groups))
    return project


@transaction.atomic
def project_update(
    *,
    project: Project,
    policies: Iterable[tuple[ModelVersion, float]] | None = None,
    trainer_groups: Iterable[Group] | None = None,
    **fields: object,
) -> Project:
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError({"fields": f"Unknown project fields: {', '.join(sorted(unknown))}."})
    project = Project.objects.select_for_update().get(pk=project.pk)
    stored_slug, stored_params = project.slug, project.sampling_params
    policies = None if policies is None else list(policies)
    trainer_groups = None if trainer_groups is None else list(trainer_groups)
    if trainer_groups and project.slug == DEFAULT_PROJECT_SLUG:
        raise ValidationError({"trainer_groups": DEFAULT_PROJECT_OPEN})
    for name, value in fields.items():
        setattr(project, name, value)
    sampling_changed = project.sampling_params != stored_params or (
        policies is not None
        and {version.pk for version, _ in policies}
        != set(project.policies.values_list("model_version_id", flat=True))
    )
    _check(project, stored_slug=stored_slug, policies=policies, sampling_changed=sampling_changed)
    project_save(project=project)
    if policies is not None:
        _set_policies(project, policies)
    if trainer_groups is not None:
        project.trainer_groups.set(trainer_groups)
    return project
