"""Writes of the labeling app: conversations, turns, branches and drafts."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from rapidfuzz.distance import Levenshtein

from accounts.roles import is_admin
from labeling.guideline_services import guideline_version_ensure_current
from labeling.models import Conversation, Draft, Message
from labeling.selectors import branch_leaf, message_path, next_role_after

MAX_CONTENT_CHARS = 20000
MAX_TITLE_CHARS = 200
MAX_INSTRUCTIONS_CHARS = 4000


def _check_can_edit(*, conversation: Conversation, user: AbstractBaseUser) -> None:
    if conversation.owner_id != user.pk and not is_admin(user):
        raise PermissionDenied("Only the conversation's writer (or an admin) can change it.")
    if conversation.status != Conversation.Status.DRAFT:
        raise ValidationError(
            f"This conversation is {conversation.get_status_display().lower()}; reopen it to edit."
        )


def _clean_content(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError({"content": "Write something first: the message is empty."})
    if len(content) > MAX_CONTENT_CHARS:
        limit = f"Messages are limited to {MAX_CONTENT_CHARS} characters"
        raise ValidationError({"content": f"{limit} ({len(content)} given)."})
    return content.strip()


def conversation_create(
    *,
    owner: AbstractBaseUser,
    title: str = "",
    instructions: str = "",
    mode: str = Conversation.Mode.NORMAL,
) -> Conversation:
    conversation = Conversation(
        owner=owner, title=title.strip(), instructions=instructions.strip(), mode=mode
    )
    conversation.full_clean(exclude=["active_leaf"])
    conversation.save()
    return conversation


def _provenance(*, author: AbstractBaseUser, content: str, sample_id: int | None, role: str):
    """Origin, sample, model version and edit distance of a message written from a suggestion."""
    if sample_id is None:
        return Message.Origin.HUMAN, None, None, None
    from sampler.models import Sample

    sample = Sample.objects.select_related("job").filter(pk=sample_id).first()
    if sample is None:
        raise ValidationError({"sample_id": "That suggestion no longer exists."})
    if sample.job.requested_by_id != author.pk and not is_admin(author):
        raise ValidationError({"sample_id": "That suggestion was made for someone else."})
    if sample.job.role != role:
        raise ValidationError({"sample_id": f"That suggestion is for a {sample.job.role} turn."})
    distance = Levenshtein.distance(sample.text, content)
    origin = Message.Origin.MODEL if distance == 0 else Message.Origin.MODEL_EDITED
    return origin, sample, sample.job.model_version_id, distance


@transaction.atomic
def message_append(
    *,
    conversation: Conversation,
    author: AbstractBaseUser,
    content: str,
    parent: Message | None = None,
    role: str | None = None,
    sample_id: int | None = None,
) -> Message:
    """Add a turn after ``parent`` (the conversation's active leaf when not given)."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _check_can_edit(conversation=conversation, user=author)
    if parent is None:
        parent = conversation.active_leaf
    elif parent.conversation_id != conversation.pk:
        raise ValidationError({"parent": "That message belongs to another conversation."})
    expected = next_role_after(message=parent)
    if role is not None and role != expected:
        raise ValidationError({"role": f"The next turn is the {expected}'s (turns alternate)."})
    content = _clean_content(content)
    origin, sample, model_version_id, distance = _provenance(
        author=author, content=content, sample_id=sample_id, role=expected
    )
    message = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=expected,
        content=content,
        origin=origin,
        sample=sample,
        model_version_id=model_version_id,
        edit_distance=distance,
        author=author,
        guideline_version=guideline_version_ensure_current(),
    )
    conversation.active_leaf = message
    conversation.save(update_fields=["active_leaf", "updated_at"])
    Draft.objects.filter(conversation=conversation, author=author, editing__isnull=True).delete()
    return message


@transaction.atomic
def message_branch(
    *, original: Message, author: AbstractBaseUser, content: str, sample_id: int | None = None
) -> Message:
    """Edit a turn without destroying it: the edit becomes a sibling and the active branch."""
    conversation = Conversation.objects.select_for_update().get(pk=original.conversation_id)
    _check_can_edit(conversation=conversation, user=author)
    content = _clean_content(content)
    if content == original.content and sample_id is None:
        raise ValidationError({"content": "Nothing changed: edit the text to create a branch."})
    origin, sample, model_version_id, distance = _provenance(
        author=author, content=content, sample_id=sample_id, role=original.role
    )
    sibling = Message.objects.create(
        conversation=conversation,
        parent=original.parent,
        role=original.role,
        content=content,
        origin=origin,
        sample=sample,
        model_version_id=model_version_id,
        edit_distance=distance,
        author=author,
        guideline_version=guideline_version_ensure_current(),
    )
    conversation.active_leaf = sibling
    conversation.save(update_fields=["active_leaf", "updated_at"])
    Draft.objects.filter(conversation=conversation, author=author, editing=original).delete()
    return sibling


@transaction.atomic
def branch_switch(*, message: Message, user: AbstractBaseUser) -> Conversation:
    """Show the branch through ``message``: its most recent continuation down to a leaf."""
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    if conversation.owner_id != user.pk and not is_admin(user):
        raise PermissionDenied("Only the conversation's writer (or an admin) can switch branches.")
    conversation.active_leaf = branch_leaf(message=message)
    conversation.save(update_fields=["active_leaf", "updated_at"])
    return conversation


@transaction.atomic
def conversation_finish(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _check_can_edit(conversation=conversation, user=user)
    path = message_path(message=conversation.active_leaf) if conversation.active_leaf else []
    roles = {m.role for m in path}
    if not {Message.Role.USER, Message.Role.ASSISTANT} <= roles:
        raise ValidationError(
            "A finished conversation needs at least one user and one assistant turn."
        )
    conversation.status = Conversation.Status.FINISHED
    conversation.finished_at = timezone.now()
    conversation.save(update_fields=["status", "finished_at", "updated_at"])
    return conversation


@transaction.atomic
def conversation_discard(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _check_can_edit(conversation=conversation, user=user)
    conversation.status = Conversation.Status.DISCARDED
    conversation.save(update_fields=["status", "updated_at"])
    return conversation


@transaction.atomic
def conversation_reopen(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if conversation.owner_id != user.pk and not is_admin(user):
        raise PermissionDenied("Only the conversation's writer (or an admin) can reopen it.")
    conversation.status = Conversation.Status.DRAFT
    conversation.finished_at = None
    conversation.save(update_fields=["status", "finished_at", "updated_at"])
    return conversation


def draft_save(
    *,
    conversation: Conversation,
    author: AbstractBaseUser,
    content: str,
    editing: Message | None = None,
    sample_id: int | None = None,
) -> Draft:
    """Upsert the author's draft; an over-long draft is refused (the page keeps the text)."""
    if conversation.owner_id != author.pk and not is_admin(author):
        raise PermissionDenied("You can only keep drafts in your own conversations.")
    if len(content) > MAX_CONTENT_CHARS:
        raise ValidationError({"content": f"Drafts are limited to {MAX_CONTENT_CHARS} characters."})
    if editing is not None and editing.conversation_id != conversation.pk:
        raise ValidationError({"editing": "That message belongs to another conversation."})
    draft, _ = Draft.objects.update_or_create(
        conversation=conversation,
        author=author,
        editing=editing,
        defaults={"content": content, "sample_id": sample_id},
    )
    return draft


def draft_discard(
    *, conversation: Conversation, author: AbstractBaseUser, editing: Message | None
) -> None:
    Draft.objects.filter(conversation=conversation, author=author, editing=editing).delete()


def suggestion_request(
    *, conversation: Conversation, author: AbstractBaseUser, n: int, role: str | None = None
):
    """Ask the active policy for ``n`` suggestions for the next turn of the active branch."""
    from sampler.models import GenerationJob
    from sampler.services import generation_job_create

    conversation = Conversation.objects.select_related("active_leaf").get(pk=conversation.pk)
    _check_can_edit(conversation=conversation, user=author)
    leaf = conversation.active_leaf
    expected = next_role_after(message=leaf)
    role = role or expected
    if role != expected:
        raise ValidationError({"role": f"The next turn is the {expected}'s."})
    job = generation_job_create(
        prefix_message=leaf,
        messages=None if leaf is not None else [],
        n=n,
        role=role,
        purpose=GenerationJob.Purpose.SUGGESTION,
        requested_by=author,
    )
    Draft.objects.update_or_create(
        conversation=conversation, author=author, editing=None, defaults={"suggestion_job": job}
    )
    return job


def message_add_alternatives(*, source: Message, samples: list) -> list[Message]:
    """Store sampled completions as siblings of ``source`` (alternatives of the same turn)."""
    return Message.objects.bulk_create(
        [
            Message(
                conversation_id=source.conversation_id,
                parent_id=source.parent_id,
                role=source.role,
                content=sample.text,
                origin=Message.Origin.MODEL,
                sample=sample,
                model_version_id=sample.job.model_version_id,
            )
            for sample in samples
        ]
    )
