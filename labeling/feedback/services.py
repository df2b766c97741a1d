"""Writes of feedback: thumbs and reports on model-written text, one row per user and target."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.feedback.models import Feedback
from labeling.feedback.selectors import CATEGORIES, FeedbackTarget

MAX_COMMENT_CHARS = 2000


def _feedback_locked(*, user: AbstractBaseUser, target: FeedbackTarget) -> Feedback:
    """The user's feedback on the target, created empty if there is none, locked for the edit."""
    feedback, _ = Feedback.objects.select_for_update().get_or_create(
        user=user,
        message=target.message,
        sample=target.sample,
        defaults={"model_version_id": target.model_version_id, **_project(target)},
    )
    return feedback


def _project(target: FeedbackTarget) -> dict:
    """Feedback belongs to the project of the conversation (or generation job) it is about."""
    if target.message is not None:
        return {"project_id": target.message.conversation.project_id}
    if target.sample is not None:
        return {"project_id": target.sample.job.project_id}
    return {}


@transaction.atomic
def feedback_rate(
    *, user: AbstractBaseUser, target: FeedbackTarget, rating: str
) -> Feedback | None:
    """Thumbs up, thumbs down, or "" to take the thumb back; the report is kept."""
    if rating not in {"", *Feedback.Rating.values}:
        raise ValidationError({"rating": "Rate with thumbs up or thumbs down."})
    feedback = _feedback_locked(user=user, target=target)
    feedback.rating = rating
    return _saved(feedback, fields=["rating"])


@transaction.atomic
def feedback_report(
    *,
    user: AbstractBaseUser,
    target: FeedbackTarget,
    categories: Iterable[str],
    comment: str = "",
    filter_wrong: bool = False,
) -> Feedback | None:
    """Report what is wrong with the text (no categories, no comment: withdraw the report) and
    whether the content filter's verdict on it was wrong; the thumb is kept."""
    chosen = set(categories)
    errors = {}
    unknown = chosen - set(CATEGORIES)
    if unknown:
        errors["categories"] = f"Unknown report categories: {', '.join(sorted(unknown))}."
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        errors["comment"] = f"Keep the comment under {MAX_COMMENT_CHARS} characters."
    if filter_wrong and target.moderation is None:
        errors["filter_wrong"] = "The content filter has not checked this text."
    if errors:
        raise ValidationError(errors)
    feedback = _feedback_locked(user=user, target=target)
    feedback.categories = [category for category in CATEGORIES if category in chosen]
    feedback.comment = comment
    if filter_wrong:
        # What "wrong" means follows from the verdict: a flagged text is a false positive.
        feedback.moderation = target.moderation
        feedback.filter_report = (
            Feedback.FilterReport.FALSE_POSITIVE
            if target.moderation.flagged
            else Feedback.FilterReport.FALSE_NEGATIVE
        )
    else:
        feedback.moderation = None
        feedback.filter_report = ""
    return _saved(feedback, fields=["categories", "comment", "moderation", "filter_report"])


def _saved(feedback: Feedback, *, fields: list[str]) -> Feedback | None:
    """Save the changed ``fields``; feedback that now says nothing (no thumb, no report) is
    deleted instead (None): a thumb taken back or an empty report is no feedback, and must not
    count as some in the admins' totals."""
    if not (feedback.rating or feedback.categories or feedback.comment or feedback.filter_report):
        feedback.delete()
        return None
    feedback.save(update_fields=[*fields, "updated_at"])
    return feedback
