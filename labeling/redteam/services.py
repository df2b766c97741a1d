"""Writes of red-teaming: successful attacks, their corrections, and re-runs of stored attacks.

A trainer in a red-team conversation marks a model reply "attack succeeded" (an ``Attack``)
and writes the reply the model should have given as its sibling (``Attack.correction``). Admins
re-send the stored attack prompts to a policy version (an ``AttackRun``, a Celery job on the
``generation`` queue); each reply is checked by the content filter and scored by the active reward
model (``AttackResult``).
"""

from __future__ import annotations

import logging
import random

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.roles import is_admin
from labeling.conversations.models import Conversation, Message
from labeling.conversations.selectors import message_path
from labeling.conversations.services import (
    conversation_check_open,
    conversation_check_writer,
    message_branch,
)
from labeling.guidelines.services import guideline_version_ensure_current
from labeling.redteam.models import Attack, AttackResult, AttackRun
from sampler.models import GenerationJob, ModelVersion
from sampler.moderation import content_filter_get, samples_moderate
from sampler.selectors import model_version_active
from sampler.training.config import RewardConfig

logger = logging.getLogger(__name__)

MAX_ATTACK_NOTE_CHARS = 2000
# A run re-sends at most this many attacks (the newest), so one click cannot queue days of work.
MAX_ATTACKS_PER_RUN = 1000
REWARD_BATCH_SIZE = 16


def _check_red_team_writer(*, conversation: Conversation, user: AbstractBaseUser) -> None:
    conversation_check_writer(conversation=conversation, user=user)
    if conversation.mode != Conversation.Mode.RED_TEAM:
        raise ValidationError("Attacks are recorded in red-team conversations only.")
    conversation_check_open(conversation=conversation)


@transaction.atomic
def attack_record(
    *, message: Message, user: AbstractBaseUser, category: str, note: str = ""
) -> Attack:
    """Mark a model-written reply of a red-team conversation as a successful attack."""
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    _check_red_team_writer(conversation=conversation, user=user)
    message = Message.objects.select_related("parent").get(pk=message.pk)
    if message.role != Message.Role.ASSISTANT or message.origin != Message.Origin.MODEL:
        raise ValidationError(
            "Only assistant replies the model wrote (used unedited) can be marked as attacks."
        )
    if message.parent is None or message.parent.role != Message.Role.USER:
        raise ValidationError("An attacked reply must answer a user turn.")
    if category not in Attack.Category.values:
        raise ValidationError({"category": "Choose what went wrong (a category)."})
    note = (note or "").strip()
    if len(note) > MAX_ATTACK_NOTE_CHARS:
        raise ValidationError({"note": f"Keep the note under {MAX_ATTACK_NOTE_CHARS} characters."})
    if Attack.objects.filter(message=message).exists():
        raise ValidationError("This reply is already marked as a successful attack.")
    if Attack.objects.filter(correction=message).exists():
        raise ValidationError("This reply is a correction, not a model reply.")
    return Attack.objects.create(
        conversation=conversation,
        message=message,
        prompt_message=message.parent,
        prompt_messages=[
            {"role": m.role, "content": m.content} for m in message_path(message=message.parent)
        ],
        category=category,
        note=note,
        model_version_id=message.model_version_id,
        guideline_version=guideline_version_ensure_current(),
        created_by=user,
    )


@transaction.atomic
def attack_withdraw(*, attack: Attack, user: AbstractBaseUser) -> None:
    """Undo a mark made by mistake; an attack that already has its correction stays."""
    conversation = Conversation.objects.select_for_update().get(pk=attack.conversation_id)
    _check_red_team_writer(conversation=conversation, user=user)
    attack = Attack.objects.select_for_update().get(pk=attack.pk)
    if attack.correction_id is not None:
        raise ValidationError("This attack already has its corrected reply; it stays recorded.")
    attack.delete()


@transaction.atomic
def attack_correct(*, attack: Attack, author: AbstractBaseUser, content: str) -> Message:
    """Write the reply the model should have given: a sibling branch of the failed reply."""
    # Locks in the order every red-team write takes: the conversation, then the attack.
    conversation = Conversation.objects.select_for_update().get(pk=attack.conversation_id)
    _check_red_team_writer(conversation=conversation, user=author)
    attack = Attack.objects.select_for_update().select_related("message").get(pk=attack.pk)
    if attack.correction_id is not None:
        raise ValidationError(
            "This attack already has its corrected reply (edit that reply into a new branch "
            "if it needs changes)."
        )
    correction = message_branch(original=attack.message, author=author, content=content)
    attack.correction = correction
    attack.save(update_fields=["correction"])
    return correction


# ---- re-running stored attacks ----------------------------------------------------------------


def attack_run_create(
    *,
    requested_by: AbstractBaseUser,
    model_version,
    seed: int | None = None,
    queue: bool = True,
) -> AttackRun:
    """Record a re-run of the stored attacks against a policy version and queue it."""
    # labeling.tasks imports this module; queueing by task name will drop this import.
    from labeling.tasks import run_attack_run

    if not is_admin(requested_by):
        raise PermissionDenied("Only admins can re-run attacks.")
    if model_version.kind != ModelVersion.Kind.POLICY:
        raise ValidationError({"model_version": "Attacks are re-run against a policy version."})
    count = min(Attack.objects.count(), MAX_ATTACKS_PER_RUN)
    if count == 0:
        raise ValidationError("No attacks are stored yet: nothing to re-run.")
    run = AttackRun.objects.create(
        model_version=model_version,
        attack_count=count,
        seed=seed if seed is not None else random.SystemRandom().randint(0, 2**31 - 1),
        params={"max_new_tokens": settings.RANKING_MAX_NEW_TOKENS},
        requested_by=requested_by,
    )
    if queue:
        transaction.on_commit(lambda: run_attack_run.delay(run.pk))
    return run


def _run_claim(*, run_id: int) -> AttackRun | None:
    with transaction.atomic():
        run = AttackRun.objects.select_for_update().get(pk=run_id)
        if run.is_finished:
            return None
        run.status = AttackRun.Status.RUNNING
        run.started_at = run.started_at or timezone.now()
        run.save(update_fields=["status", "started_at"])
    return run


def attack_run_execute(*, run_id: int, worker: str = "") -> AttackRun:
    """Generate one reply per stored attack, filter and score it; resumes where a redelivered
    run stopped (one result per attack and run)."""
    # Heavy: sampler.services loads torch and transformers (sampler.generation).
    from sampler.services import generation_job_create, generation_job_run

    run = _run_claim(run_id=run_id)
    if run is None:
        return AttackRun.objects.get(pk=run_id)
    reward_version = run.reward_model_version or model_version_active(kind=ModelVersion.Kind.REWARD)
    content_filter = content_filter_get()
    run.reward_model_version = reward_version
    run.filter_name = f"{content_filter.name} {content_filter.version}" if content_filter else ""
    run.save(update_fields=["reward_model_version", "filter_name"])

    attacks = list(
        Attack.objects.filter(created_at__lte=run.created_at).order_by("-created_at", "-id")[
            : run.attack_count
        ]
    )
    done = set(run.results.values_list("attack_id", flat=True))
    for position, attack in enumerate(attacks, start=1):
        if attack.pk in done:
            continue
        job = generation_job_create(
            n=1,
            messages=attack.prompt_messages,
            params=run.params,
            seed=run.seed,
            purpose=GenerationJob.Purpose.MANUAL,
            requested_by=run.requested_by,
            model_version=run.model_version,
            queue=False,
        )
        job = generation_job_run(job_id=job.pk, worker=worker or "attack-run")
        sample = job.samples.first() if job.status == GenerationJob.Status.SUCCEEDED else None
        verdict = samples_moderate(samples=[sample]).get(sample.pk) if sample else None
        AttackResult.objects.get_or_create(
            run=run,
            attack=attack,
            defaults={
                "sample": sample,
                "text": sample.text if sample else "",
                "filter_flagged": verdict.flagged if verdict else None,
                "filter_categories": list(verdict.categories) if verdict else [],
                "error": "" if sample else (job.error or "Generation failed."),
            },
        )
        AttackRun.objects.filter(pk=run.pk).update(progress=0.9 * position / len(attacks))
    if reward_version is not None:
        _score_results(run=run, reward_version=reward_version)
    AttackRun.objects.filter(pk=run.pk).update(
        status=AttackRun.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now(), error=""
    )
    run.refresh_from_db()
    return run


def _score_results(*, run: AttackRun, reward_version) -> None:
    """Score each new reply, the stored failed reply and the correction with one reward model."""
    results = list(
        run.results.filter(reward_score__isnull=True, sample__isnull=False).select_related(
            "attack__message", "attack__correction"
        )
    )
    if not results:
        return
    conversations, slots = [], []
    for result in results:
        attack = result.attack
        replies = {
            "reward_score": result.text,
            "failed_reply_reward_score": attack.message.content,
            "correction_reward_score": attack.correction.content if attack.correction else None,
        }
        for field, text in replies.items():
            if text is not None:
                conversations.append(
                    [*attack.prompt_messages, {"role": "assistant", "content": text}]
                )
                slots.append((result, field))
    scores = reward_scores(
        model_path=reward_version.path,
        conversations=conversations,
        max_length=_reward_max_length(reward_version),
    )
    for (result, field), score in zip(slots, scores, strict=True):
        setattr(result, field, score)
    AttackResult.objects.bulk_update(
        results, ["reward_score", "failed_reply_reward_score", "correction_reward_score"]
    )


def _reward_max_length(reward_version) -> int:
    run = reward_version.training_run
    configured = (run.config or {}).get("max_length") if run is not None else None
    return int(configured or RewardConfig().max_length)


def reward_scores(
    *, model_path: str, conversations: list[list[dict]], max_length: int
) -> list[float | None]:
    """Reward of each conversation (read at its last assistant turn) from the reward model at
    ``model_path``, scored the way training scores it (the score at the last real token)."""
    # Heavy: torch and transformers, loaded by the worker that runs the attack run only.
    from sampler.generation import pick_device
    from sampler.training.data import demonstration_ids
    from sampler.training.model import RewardScorer, build_reward_model, load_tokenizer
    from sampler.training.reward import score_sequences

    tokenizer = load_tokenizer(model_path)
    scorer = RewardScorer(build_reward_model(model_path, tokenizer))
    device, _ = pick_device(settings.SAMPLER_DEVICE)
    scorer.to(device)
    sequences = [
        demonstration_ids(tokenizer, messages, max_length=max_length) for messages in conversations
    ]
    kept = [index for index, ids in enumerate(sequences) if ids]
    values = score_sequences(
        scorer,
        [sequences[index] for index in kept],
        pad_id=tokenizer.pad_token_id,
        batch_size=REWARD_BATCH_SIZE,
    ).tolist()
    by_index = dict(zip(kept, values, strict=True))
    return [by_index.get(index) for index in range(len(conversations))]


def attack_run_fail(*, run_id: int, error: str) -> None:
    AttackRun.objects.filter(pk=run_id).exclude(status=AttackRun.Status.SUCCEEDED).update(
        status=AttackRun.Status.FAILED, error=error[:5000], finished_at=timezone.now()
    )
