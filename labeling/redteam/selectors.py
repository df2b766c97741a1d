"""Reads of red-teaming: attacks by category and model version, success rates, re-runs."""

from __future__ import annotations

from django.db.models import Avg, Count, F, Q, QuerySet
from django.shortcuts import get_object_or_404

from config.querysets import filter_given, values_in_chunks
from labeling.conversations.models import Conversation, Message
from labeling.redteam.models import Attack, AttackResult, AttackRun


def attack_list(*, category: str = "", model_version_id: int | None = None) -> QuerySet[Attack]:
    attacks = Attack.objects.select_related(
        "model_version", "created_by", "message", "prompt_message", "correction", "conversation"
    )
    if category:
        attacks = attacks.filter(category=category)
    if model_version_id:
        attacks = attacks.filter(model_version_id=model_version_id)
    return attacks.order_by("-created_at", "-id")


def attack_counts_by_category(*, model_version_id: int | None = None) -> list[dict]:
    attacks = Attack.objects.all()
    if model_version_id:
        attacks = attacks.filter(model_version_id=model_version_id)
    counts = dict(attacks.values_list("category").annotate(total=Count("id")))
    corrected = dict(
        attacks.filter(correction__isnull=False).values_list("category").annotate(total=Count("id"))
    )
    return [
        {
            "category": value,
            "label": label,
            "attacks": counts.get(value, 0),
            "corrected": corrected.get(value, 0),
        }
        for value, label in Attack.Category.choices
    ]


def red_team_model_replies() -> QuerySet[Message]:
    """Replies the model wrote (used unedited) in red-team conversations: what could be attacked."""
    return Message.objects.filter(
        conversation__mode=Conversation.Mode.RED_TEAM,
        role=Message.Role.ASSISTANT,
        origin=Message.Origin.MODEL,
    ).exclude(sample__job__purpose="ranking")


def red_team_model_versions() -> list[tuple[int, str]]:
    """The versions that wrote model replies in red-team conversations (what the Red team
    page filters by), as (id, name), newest first."""
    return list(
        red_team_model_replies()
        .filter(model_version__isnull=False)
        .values_list("model_version_id", "model_version__name")
        .order_by("-model_version__created_at", "model_version_id")
        .distinct()
    )


def attack_success_by_model_version(
    *, category: str = "", model_version_id: int | None = None
) -> list[dict]:
    """Per model version (only ``model_version_id``'s row when given, as the page's other
    figures are filtered): model replies in red-team conversations, successful attacks on them,
    and the success rate (attacks / replies), newest version first."""
    attack_filter = Q(attack__isnull=False)
    if category:
        attack_filter &= Q(attack__category=category)
    replies = red_team_model_replies()
    if model_version_id:
        replies = replies.filter(model_version_id=model_version_id)
    rows = (
        replies.values("model_version_id", "model_version__name", "model_version__created_at")
        .annotate(
            replies=Count("id"),
            attacks=Count("id", filter=attack_filter),
            corrected=Count("id", filter=attack_filter & Q(attack__correction__isnull=False)),
            **{
                f"category_{value}": Count("id", filter=Q(attack__category=value))
                for value in Attack.Category.values
            },
        )
        .order_by("-model_version__created_at")
    )
    return [
        {
            **row,
            "success_rate": row["attacks"] / row["replies"] if row["replies"] else None,
            "categories": [row[f"category_{value}"] for value in Attack.Category.values],
        }
        for row in rows
    ]


def attack_run_list(*, limit: int = 50) -> list[AttackRun]:
    runs = list(
        AttackRun.objects.select_related("model_version", "reward_model_version", "requested_by")
        .annotate(
            result_count=Count("results"),
            flagged_count=Count("results", filter=Q(results__filter_flagged=True)),
            failed_count=Count("results", filter=~Q(results__error="")),
            # Results kept from attacks withdrawn after the run succeeded.
            withdrawn_count=Count("results", filter=Q(results__attack__isnull=True)),
            mean_reward=Avg("results__reward_score"),
            mean_failed_reward=Avg("results__failed_reply_reward_score"),
            mean_correction_reward=Avg("results__correction_reward_score"),
        )
        .order_by("-created_at", "-id")[:limit]
    )
    return runs


def attack_run_get(*, run_id: int) -> AttackRun:
    return get_object_or_404(
        AttackRun.objects.select_related("model_version", "reward_model_version", "requested_by"),
        pk=run_id,
    )


def attack_run_retry(*, run: AttackRun) -> AttackRun | None:
    """The run that retries ``run``'s failed attacks (``attack_run_retry_failed``), if any."""
    return AttackRun.objects.filter(retry_of=run).first()


def attack_run_failed_results(*, run: AttackRun) -> QuerySet[AttackResult]:
    """``run``'s results without a reply (an error), less those of attacks withdrawn since,
    the model's refusals included: a retry of its failed attacks re-sends those of them with
    ``error_permanent`` False."""
    return run.results.exclude(error="").filter(attack__isnull=False)


def attack_run_failure_counts(*, run: AttackRun) -> dict[str, int]:
    """How many of ``run``'s failed results (``attack_run_failed_results``) there are
    (``failed``): those the model refused for what they ask (``refused``), which a retry of the
    run's failed attacks leaves out, and the others (``retryable``), which it re-sends."""
    return attack_run_failed_results(run=run).aggregate(
        failed=Count("pk"),
        refused=Count("pk", filter=Q(error_permanent=True)),
        retryable=Count("pk", filter=Q(error_permanent=False)),
    )


def attack_run_results(*, run: AttackRun) -> QuerySet[AttackResult]:
    """``run``'s results, each with ``waiting_for_filter``: its sample was stored while the
    content filter could not run and waits for the sweep (which gives the result its verdict)."""
    return (
        run.results.select_related(
            "attack", "attack__message", "attack__correction", "attack__model_version"
        )
        .annotate(waiting_for_filter=F("sample__moderation_pending"))
        .order_by("category", "attack_id")
    )


def attack_find(*, attack_id: int) -> Attack | None:
    """The attack, or None when there is none (never was, or withdrawn)."""
    return Attack.objects.select_related("conversation", "message").filter(pk=attack_id).first()


def attack_has_run(*, attack: Attack) -> bool:
    """Whether a run has ``attack`` in its set (asked for, running or finished) or a result of
    it: what such a run sends and scores of the attack must stay as it was."""
    return attack.run_entries.exists() or attack.results.exists()


def attack_of_message(*, message_id: int) -> Attack | None:
    return (
        Attack.objects.select_related("conversation", "message")
        .filter(message_id=message_id)
        .first()
    )


def attack_slot_message(*, message_id: int) -> Message:
    """A reply with what its red-team slot in the editor shows: its attack and correction."""
    return Message.objects.select_related(
        "conversation", "attack", "attack__correction", "correction_of"
    ).get(pk=message_id)


def red_team_conversation_ids(*, conversation_ids: list[int]) -> set[int]:
    return set(
        Conversation.objects.filter(
            pk__in=conversation_ids, mode=Conversation.Mode.RED_TEAM
        ).values_list("pk", flat=True)
    )


def correction_attack_ids(*, message_ids: list[int]) -> dict[int, int]:
    """Correction message id -> the attack it corrects, for the given messages."""
    return dict(
        Attack.objects.filter(correction_id__in=message_ids).values_list("correction_id", "pk")
    )


def red_team_pair_chunks(
    *,
    finished_bounds: dict,
    exclude_owner_ids: tuple[int, ...] = (),
    model_version_ids: tuple[int, ...] = (),
    guideline_versions: tuple[int, ...] = (),
    chunk_size: int = 500,
    project_ids: tuple[int, ...] = (),
):
    """Corrected attacks of finished conversations, as dicts, ``chunk_size`` at a time: the
    prompt, the failed reply (rejected) and the correction (chosen)."""
    attacks = Attack.objects.filter(
        correction__isnull=False, conversation__status=Conversation.Status.FINISHED
    )
    for lookup, value in finished_bounds.items():
        attacks = attacks.filter(**{f"conversation__finished_at__{lookup}": value})
    if exclude_owner_ids:
        attacks = attacks.exclude(conversation__owner_id__in=exclude_owner_ids)
    attacks = filter_given(
        attacks,
        model_version_id__in=model_version_ids,
        correction__guideline_version__number__in=guideline_versions,
        project_id__in=project_ids,
    )
    yield from values_in_chunks(
        attacks,
        "conversation_id",
        "conversation__owner_id",
        "category",
        "prompt_messages",
        "message_id",
        "message__content",
        "correction_id",
        "correction__content",
        "correction__guideline_version__number",
        "model_version__name",
        chunk_size=chunk_size,
    )
