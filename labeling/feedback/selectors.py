"""Reads of feedback: targets a user may rate, their own feedback, the admins' overview."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from accounts.roles import is_admin
from config.querysets import filter_given, local_day_bounds
from labeling.conversations.models import Message, conversation_finished
from labeling.conversations.selectors import message_get_for_user
from labeling.feedback.models import Feedback
from ranking.rank.selectors import assignment_reply, assignment_reply_of_message
from sampler.models import ModerationResult, Sample
from sampler.moderation.filters import content_filter_configured
from sampler.moderation.selectors import (
    moderation_shown_by_sample,
    moderation_shown_of_texts,
)

TARGET_KINDS = ("message", "sample")
MODEL_ORIGINS = (Message.Origin.MODEL, Message.Origin.MODEL_EDITED)
CATEGORIES = tuple(Feedback.Category.values)


@dataclass(frozen=True)
class FeedbackTarget:
    """A model-written message or a sample, as a user may give feedback on it; or (kind
    "reply") a reply of a ranking task, by the number it is shown under in the assignment
    ``assignment_id``, its message kept behind it (``feedback_target_of_reply``)."""

    kind: str
    # The message's or sample's id; a reply's number.
    id: int
    text: str
    model_version_id: int | None
    model_version_name: str
    message: Message | None = None
    sample: Sample | None = None
    # The newest content filter result on the target's text, if it was filtered: a message's
    # is its sample's only when it is the sample's text (a reply's: as the ranking screen shows
    # it).
    moderation: ModerationResult | None = None
    assignment_id: int | None = None
    # No verdict yet on a message's own text (edited from a suggestion, or imported) that a
    # worker is to filter (``Message.text_moderation_pending``) while a filter is configured.
    # The page says so rather than show nothing, or the suggestion's verdict.
    moderation_pending: bool = False


def feedback_target_get(*, kind: str, target_id: int, user: AbstractBaseUser) -> FeedbackTarget:
    """The target if ``user`` may see it: model-written messages of their own conversations'
    trees and their own generation jobs' samples (admins: all); 404 otherwise, as for an id
    that does not exist. The replies sampled for a ranking task are stored in the writer's
    conversation but are no part of its tree: the writer never sees them, and rates them no
    more than any trainer not given the task. A trainer given the task reaches its replies by
    the numbers they are shown under (``feedback_target_of_reply``), never by a message id:
    the original's is the smallest."""
    if kind == "message":
        message = get_object_or_404(
            Message.objects.select_related("model_version", "sample"),
            pk=target_id,
            origin__in=MODEL_ORIGINS,
        )
        if not is_admin(user):
            message_get_for_user(message_id=message.pk, user=user)
        # The verdict on the words shown: an edited suggestion's is on its own text, if any.
        own_text = not (message.sample_id and message.content == message.sample.text)
        (moderation,) = moderation_shown_of_texts(
            texts=[(message.content, None if own_text else message.sample_id)]
        )
        version = message.model_version
        return FeedbackTarget(
            kind=kind,
            id=message.pk,
            text=message.content,
            model_version_id=version.pk if version else None,
            model_version_name=version.name if version else "",
            message=message,
            moderation=moderation,
            # Only while a filter is configured: with none, a marked message waits for one (the
            # sweep then filters it, and those saved unmarked meanwhile), so "not judged yet"
            # would promise a verdict nothing is making.
            moderation_pending=(
                message.text_moderation_pending
                and moderation is None
                and content_filter_configured()
            ),
        )
    if kind == "sample":
        samples = Sample.objects.select_related("job__model_version")
        if not is_admin(user):
            samples = samples.filter(job__requested_by=user)
        sample = get_object_or_404(samples, pk=target_id)
        moderation = moderation_shown_by_sample(sample_ids=[sample.pk]).get(sample.pk)
        return FeedbackTarget(
            kind=kind,
            id=sample.pk,
            text=sample.text,
            model_version_id=sample.job.model_version_id,
            model_version_name=sample.job.model_version.name,
            sample=sample,
            moderation=moderation,
            # Stored while the filter could not run: the sweep judges it (as a message above).
            moderation_pending=(
                sample.moderation_pending and moderation is None and content_filter_configured()
            ),
        )
    raise Http404("No such feedback target.")


def feedback_target_of_reply(
    *, assignment_id: int, number: int, user: AbstractBaseUser
) -> FeedbackTarget:
    """Reply ``number`` of one of ``user``'s ranking assignments, as they give feedback on it:
    the feedback is the message's behind it, whoever wrote it, but nothing in the target tells
    which message (nor its model: the reply the task was made from may be another model's
    than its alternatives'). 404 for anyone else's assignment or a number no reply has."""
    reply = assignment_reply(assignment_id=assignment_id, number=number, trainer=user)
    message = Message.objects.select_related("model_version").get(pk=reply.message_id)
    return FeedbackTarget(
        kind="reply",
        id=reply.number,
        text=message.content,
        model_version_id=message.model_version_id,
        model_version_name="",
        message=message,
        moderation=reply.moderation,
        assignment_id=reply.assignment_id,
    )


def _ranked_replies(user: AbstractBaseUser) -> QuerySet[Message]:
    """Replies of ranking tasks that ``user`` may see only as such, by the number they are
    shown under (never by message id, nor with their model): every one but the messages of
    their own conversations' trees (a reply they wrote is a task's original, which they are
    never given to rank)."""
    return Message.objects.filter(candidacies__isnull=False).exclude(
        conversation__owner=user, is_candidate=False
    )


def feedback_reply_address(*, feedback: Feedback, user: AbstractBaseUser) -> tuple[int, int] | None:
    """Where ``user`` reaches the message their ``feedback`` is on as a reply of a ranking
    task (assignment id, number shown); None for feedback on anything else. 404 for a reply
    no assignment of theirs shows any more (the lease on its task was given back when they
    took back the ranking before it): reached by its message id, it would tell its model and
    its place in the writer's conversation."""
    if feedback.message_id is None:
        return None
    address = assignment_reply_of_message(message_id=feedback.message_id, trainer=user)
    if (
        address is None
        and not is_admin(user)
        and _ranked_replies(user).filter(pk=feedback.message_id).exists()
    ):
        raise Http404("That reply is no longer shown to you.")
    return address


def feedback_of_user(*, user: AbstractBaseUser, target: FeedbackTarget) -> Feedback | None:
    return Feedback.objects.filter(user=user, message=target.message, sample=target.sample).first()


def feedback_get_for_user(*, feedback_id: int, user: AbstractBaseUser) -> Feedback:
    """A trainer's own feedback; anyone else's is a 404, whoever asks (admins use the overview)."""
    return get_object_or_404(Feedback.objects.filter(user=user), pk=feedback_id)


def feedback_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Feedback]:
    """A user's feedback, each marked ``ranked_reply`` when it is on a reply of a ranking task
    (whose model they are not told: ``_ranked_replies``), and ``reply_shown`` when one of
    their assignments still shows that reply (one given back by an undo does not)."""
    reply_shown = Message.objects.filter(
        pk=OuterRef("message_id"), candidacies__task__assignments__trainer=user
    )
    return (
        Feedback.objects.filter(user=user)
        .select_related("model_version", "message", "sample")
        .annotate(
            ranked_reply=Exists(_ranked_replies(user).filter(pk=OuterRef("message_id"))),
            reply_shown=Exists(reply_shown),
        )
    )


# ---- the admins' overview ---------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackFilters:
    rating: str = ""
    category: str = ""
    filter_report: str = ""
    model_version_id: int | None = None
    date_from: date | None = None
    date_to: date | None = None


def _day_bounds(field: str, filters: FeedbackFilters) -> Q:
    bounds = local_day_bounds(filters.date_from, filters.date_to)
    return Q(**{f"{field}__{lookup}": instant for lookup, instant in bounds.items()})


def _has_category(category: str) -> Q:
    # Portable (SQLite has no JSON containment): the category's quoted name in the stored list.
    return Q(categories__icontains=f'"{category}"')


def feedback_filtered(*, filters: FeedbackFilters) -> QuerySet[Feedback]:
    rows = Feedback.objects.filter(_day_bounds("updated_at", filters))
    if filters.rating:
        rows = rows.filter(rating=filters.rating)
    if filters.category:
        rows = rows.filter(_has_category(filters.category))
    if filters.filter_report:
        rows = rows.filter(filter_report=filters.filter_report)
    if filters.model_version_id:
        rows = rows.filter(model_version_id=filters.model_version_id)
    return rows


def feedback_counts_by_model_version(*, rows: QuerySet[Feedback]) -> list[dict]:
    """Per model version: feedback given, thumbs, reports and each report category."""
    any_report = Q()
    for category in CATEGORIES:
        any_report |= _has_category(category)
    per_category = {
        category: Count("id", filter=_has_category(category)) for category in CATEGORIES
    }
    counts = (
        rows.order_by()
        .values("model_version_id", "model_version__name")
        .annotate(
            total=Count("id"),
            up=Count("id", filter=Q(rating=Feedback.Rating.UP)),
            down=Count("id", filter=Q(rating=Feedback.Rating.DOWN)),
            reports=Count("id", filter=any_report),
            false_positive=Count("id", filter=Q(filter_report="false_positive")),
            false_negative=Count("id", filter=Q(filter_report="false_negative")),
            **per_category,
        )
        .order_by("model_version__name")
    )
    return [
        {**row, "categories": [(category, row[category]) for category in CATEGORIES]}
        for row in counts
    ]


def filter_confusion(*, filters: FeedbackFilters) -> list[dict]:
    """The content filter's confusion counts per filter version, from trainers' reports.

    FP / FN are results someone reported as wrong. TP / TN are derived: results (flagged /
    passed) nobody reported, which is what they are assumed to be, not a confirmed verdict.
    With a model version chosen, only results on that version's samples count: a result on a
    reply's own text (an edited or imported reply) has no sample and so no version.
    """
    results = ModerationResult.objects.filter(_day_bounds("created_at", filters))
    if filters.model_version_id:
        results = results.filter(sample__job__model_version_id=filters.model_version_id)
    rows = (
        results.order_by()
        .values("filter_name", "filter_version")
        .annotate(
            # Not named "flagged": an annotation would shadow the field in the filters below.
            flagged_count=Count("id", filter=Q(flagged=True), distinct=True),
            passed_count=Count("id", filter=Q(flagged=False), distinct=True),
            false_positive=Count(
                "id",
                filter=Q(flagged=True, filter_reports__filter_report="false_positive"),
                distinct=True,
            ),
            false_negative=Count(
                "id",
                filter=Q(flagged=False, filter_reports__filter_report="false_negative"),
                distinct=True,
            ),
        )
        .order_by("filter_name", "filter_version")
    )
    return [
        {
            **row,
            "true_positive_assumed": row["flagged_count"] - row["false_positive"],
            "true_negative_assumed": row["passed_count"] - row["false_negative"],
        }
        for row in rows
    ]


# ---- exports ----------------------------------------------------------------------------------


def feedback_summary_empty() -> dict:
    return {"up": 0, "down": 0, "reports": dict.fromkeys(CATEGORIES, 0)}


def feedback_summaries(*, messages: Iterable[tuple[int, int | None]]) -> dict[int, dict]:
    """Thumbs and report counts per message id, counting feedback on the message and on the
    sample it came from, in one query. ``messages``: (message id, sample id or None) pairs."""
    pairs = list(messages)
    by_sample: dict[int, list[int]] = {}
    for message_id, sample_id in pairs:
        if sample_id is not None:
            by_sample.setdefault(sample_id, []).append(message_id)
    summaries = {message_id: feedback_summary_empty() for message_id, _ in pairs}
    rows = Feedback.objects.filter(
        Q(message_id__in=list(summaries)) | Q(sample_id__in=list(by_sample))
    ).values_list("message_id", "sample_id", "rating", "categories")
    for message_id, sample_id, rating, categories in rows:
        owners = [message_id] if message_id is not None else by_sample.get(sample_id, [])
        for owner in owners:
            summary = summaries[owner]
            if rating in ("up", "down"):
                summary[rating] += 1
            for category in categories or []:
                if category in summary["reports"]:
                    summary["reports"][category] += 1
    return summaries


def feedback_for_training(
    *,
    date_from: date | None = None,
    date_to: date | None = None,
    exclude_user_ids: tuple[int, ...] = (),
    model_version_ids: tuple[int, ...] = (),
    project_ids: tuple[int, ...] = (),
) -> QuerySet[Feedback]:
    """Feedback that says something about a reply (a thumb or a report), oldest first, with
    what training reads of its target; dates are local days of when it was last given. Only
    a finished conversation is a source (``conversation_finished``, as for rankings): feedback
    on a reply of a conversation reopened or discarded (a ranking task's reply is stored in its
    writer's), or on a sample made for one, is left out until it is finished again; a sample
    of no conversation ("Try the model") is kept."""
    rows = (
        Feedback.objects.filter(
            conversation_finished("message__")
            | Q(sample__isnull=False, sample__job__prefix_message__isnull=True)
            | conversation_finished("sample__job__prefix_message__")
        )
        .select_related("message__sample__job", "sample__job", "model_version")
        .order_by("pk")
    )
    bounds = local_day_bounds(date_from, date_to)
    rows = rows.filter(**{f"updated_at__{lookup}": instant for lookup, instant in bounds.items()})
    if exclude_user_ids:
        rows = rows.exclude(user_id__in=exclude_user_ids)
    rows = filter_given(rows, model_version_id__in=model_version_ids, project_id__in=project_ids)
    return rows.filter(Q(rating__in=["up", "down"]) | ~Q(categories=[]))
