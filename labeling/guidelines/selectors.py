"""Reads of the labeling guidelines."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from labeling.guidelines.models import (
    DEFAULT_CHANGE_NOTE,
    DEFAULT_GUIDELINES,
    GuidelineAcknowledgement,
    GuidelineVersion,
)


def guideline_version_list() -> QuerySet[GuidelineVersion]:
    return GuidelineVersion.objects.select_related("author").order_by("-number")


def guideline_version_get(*, number: int) -> GuidelineVersion | None:
    return GuidelineVersion.objects.select_related("author").filter(number=number).first()


def guideline_version_current() -> GuidelineVersion:
    """The newest version. Before any is saved: version 1 with the default text, unsaved (a
    page that shows it writes nothing; the first write that needs it saves it)."""
    return guideline_version_list().first() or GuidelineVersion(
        number=1, text=DEFAULT_GUIDELINES, change_note=DEFAULT_CHANGE_NOTE
    )


def guideline_has_read(*, user: AbstractBaseUser, version: GuidelineVersion) -> bool:
    if version.pk is None:
        return False
    return GuidelineAcknowledgement.objects.filter(user=user, version=version).exists()


def guideline_version_numbers() -> dict[int, int]:
    """Version id -> number, for every version (a few dozen rows at most)."""
    return dict(GuidelineVersion.objects.values_list("pk", "number"))
