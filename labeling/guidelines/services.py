"""Writes of the labeling guidelines: versions (editing makes a new one; each project numbers its
own) and who read which."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from accounts.roles import is_admin
from config.text import newlines_normalized, one_line_problem
from labeling.guidelines.models import (
    DEFAULT_CHANGE_NOTE,
    DEFAULT_GUIDELINES,
    GuidelineAcknowledgement,
    GuidelineVersion,
)
from labeling.guidelines.selectors import guideline_project_id
from ranking.projects.services import project_lock

MAX_GUIDELINE_CHARS = 50000
MAX_CHANGE_NOTE_CHARS = 300


def guideline_version_ensure_current(*, project_id: int | None = None) -> GuidelineVersion:
    """The project's newest guideline version (``project_id`` None: the default project's);
    its version 1 (the defaults above) is created on first use."""
    project_id = guideline_project_id(project_id)
    versions = GuidelineVersion.objects.filter(project_id=project_id)
    current = versions.order_by("-number").first()
    if current is not None:
        return current
    try:
        with transaction.atomic():
            version, _ = versions.get_or_create(
                project_id=project_id,
                number=1,
                defaults={"text": DEFAULT_GUIDELINES, "change_note": DEFAULT_CHANGE_NOTE},
            )
    except IntegrityError:
        version = versions.get(number=1)  # made by a concurrent first use
    return version


@transaction.atomic
def guideline_version_create(
    *, author: AbstractBaseUser, text: str, change_note: str = "", project_id: int | None = None
) -> GuidelineVersion:
    """Save edited guidelines as the project's next version (admins only); unchanged text is
    refused, and so is a change note that is not one line (``config.text.one_line_problem``)."""
    if not is_admin(author):
        raise PermissionDenied("Only admins can edit the guidelines.")
    text = (text or "").strip()
    change_note = (change_note or "").strip()
    if not text:
        raise ValidationError({"text": "The guidelines cannot be empty."})
    if len(text) > MAX_GUIDELINE_CHARS:
        raise ValidationError(
            {"text": f"Guidelines are limited to {MAX_GUIDELINE_CHARS} characters ({len(text)})."}
        )
    if len(change_note) > MAX_CHANGE_NOTE_CHARS:
        raise ValidationError(
            {"change_note": f"Keep the change note under {MAX_CHANGE_NOTE_CHARS} characters."}
        )
    # A sentence shown in a line (the banner, the versions table), as every one-line field is.
    if problem := one_line_problem(change_note):
        raise ValidationError({"change_note": problem})
    project_id = guideline_project_id(project_id)
    # One save at a time per project, so two at once (a double-clicked Save, two admins) get
    # consecutive numbers, the second comparing with the first's text. The project's row is
    # locked, not the newest version's: a save that waited for that lock would still read the
    # version it waited on as the newest (PostgreSQL re-reads the locked row, not the rows
    # committed meanwhile) and take its number again.
    project_lock(project_id=project_id)
    current = guideline_version_ensure_current(project_id=project_id)
    # A version saved from the plain form before its line breaks were taken as \n holds CRLF:
    # the same text with \n is no change.
    if newlines_normalized(current.text).strip() == newlines_normalized(text):
        raise ValidationError({"text": "Nothing changed: edit the text to make a new version."})
    return GuidelineVersion.objects.create(
        project_id=project_id,
        number=current.number + 1,
        text=text,
        change_note=change_note,
        author=author,
    )


def guideline_acknowledge(
    *, user: AbstractBaseUser, version: GuidelineVersion
) -> GuidelineAcknowledgement:
    """Record that ``user`` read ``version`` (idempotent). Only its project's current version:
    an older one is refused (ValidationError naming the current one), as reading it is not
    reading the guidelines in force, and nothing is recorded."""
    current = guideline_version_ensure_current(project_id=version.project_id)
    if version.pk != current.pk:
        raise ValidationError(
            f"Version {version.number} is no longer current: version {current.number} is. "
            f"Read version {current.number}, then confirm it."
        )
    acknowledgement, _ = GuidelineAcknowledgement.objects.get_or_create(user=user, version=version)
    return acknowledgement
