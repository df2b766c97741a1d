"""Reads of the labeling guidelines. Every project has its own version sequence; ``project_id``
None means the default project."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from config.querysets import ids_existing
from labeling.guidelines.models import (
    DEFAULT_CHANGE_NOTE,
    DEFAULT_GUIDELINES,
    GuidelineAcknowledgement,
    GuidelineVersion,
)
from ranking.projects.selectors import project_default


def guideline_project_id(project_id: int | None) -> int:
    return project_id if project_id is not None else project_default().pk


def guideline_version_list(*, project_id: int | None = None) -> QuerySet[GuidelineVersion]:
    return (
        GuidelineVersion.objects.select_related("author")
        .filter(project_id=guideline_project_id(project_id))
        .order_by("-number")
    )


def guideline_version_get(*, number: int, project_id: int | None = None) -> GuidelineVersion | None:
    return guideline_version_list(project_id=project_id).filter(number=number).first()


def guideline_version_current(*, project_id: int | None = None) -> GuidelineVersion:
    """The project's newest version. Before any is saved: version 1 with the default text,
    unsaved (a page that shows it writes nothing; the first write that needs it saves it)."""
    project_id = guideline_project_id(project_id)
    return guideline_version_list(project_id=project_id).first() or GuidelineVersion(
        project_id=project_id, number=1, text=DEFAULT_GUIDELINES, change_note=DEFAULT_CHANGE_NOTE
    )


def guideline_has_read(*, user: AbstractBaseUser, version: GuidelineVersion) -> bool:
    if version.pk is None:
        return False
    return GuidelineAcknowledgement.objects.filter(user=user, version=version).exists()


def guideline_version_numbers() -> dict[int, int]:
    """Version id -> number, for every version of every project (a few dozen rows each)."""
    return dict(GuidelineVersion.objects.values_list("pk", "number"))


def guideline_numbers_existing(*, numbers: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``numbers`` when each is some project's guideline version number; ValidationError
    naming those that are not."""
    return ids_existing(
        GuidelineVersion.objects.all(),
        numbers,
        what="guideline version",
        key="guideline_version",
        field="number",
    )


def guideline_number_choices() -> list[tuple[int, str]]:
    """Each version number in use, newest first, named with the projects that have it (for a
    filter by version number)."""
    projects: dict[int, list[str]] = {}
    for number, name in GuidelineVersion.objects.order_by("-number", "project__name").values_list(
        "number", "project__name"
    ):
        projects.setdefault(number, []).append(name)
    return [(number, f"v{number} ({', '.join(names)})") for number, names in projects.items()]
