"""Reads of the labeling guidelines."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from labeling.guidelines.models import GuidelineAcknowledgement, GuidelineVersion


def guideline_version_list() -> QuerySet[GuidelineVersion]:
    return GuidelineVersion.objects.select_related("author").order_by("-number")


def guideline_version_get(*, number: int) -> GuidelineVersion | None:
    return GuidelineVersion.objects.select_related("author").filter(number=number).first()


def guideline_has_read(*, user: AbstractBaseUser, version: GuidelineVersion) -> bool:
    return GuidelineAcknowledgement.objects.filter(user=user, version=version).exists()


def guideline_version_numbers() -> dict[int, int]:
    """Version id -> number, for every version (a few dozen rows at most)."""
    return dict(GuidelineVersion.objects.values_list("pk", "number"))
