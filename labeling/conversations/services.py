"""Writes of conversations: turns, branches, drafts, suggestions and imports."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from itertools import pairwise
from typing import NamedTuple

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import BooleanField, ExpressionWrapper, F, OuterRef, Q
from django.utils import timezone
from rapidfuzz.distance import LCSseq, Levenshtein

from accounts.roles import is_admin
from config.celery import Queue, enqueue
from config.querysets import transaction_lock
from config.text import one_line_problem, text_problem
from labeling.conversations.importing import (
    ImportReport,
    LineError,
    ParsedConversation,
    parsed_lines,
)
from labeling.conversations.models import (
    COMPOSER_ROLES,
    MAX_CONTENT_CHARS,
    MAX_PATH_MESSAGES,
    Conversation,
    Draft,
    Message,
    MessageWalk,
)
from labeling.conversations.selectors import (
    branch_leaf,
    conversation_fingerprints_in_project,
    message_depth,
    message_path,
    next_role_after,
    samples_made_for_turn_after,
)
from labeling.guidelines.services import guideline_version_ensure_current
from labeling.redteam.models import Attack
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, project_default_id
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.services import generation_job_create
from sampler.moderation.filters import ContentFilter, content_filter_configured
from sampler.moderation.models import ModerationResult
from sampler.moderation.selectors import moderation_of_sample_exists
from sampler.moderation.services import (
    ContentFilterUnavailable,
    content_filter_ready,
    samples_moderate,
    samples_moderate_pending,
    texts_moderate,
    waiting_judge,
)

log = logging.getLogger(__name__)

OTHER_CONVERSATIONS_MESSAGE = "That message belongs to another conversation."


def conversation_check_writer(
    *, conversation: Conversation, user: AbstractBaseUser, action: str = "change it"
) -> None:
    """Only the conversation's writer (or an admin) may change it; ``action`` names the change."""
    if conversation.owner_id != user.pk and not is_admin(user):
        raise PermissionDenied(f"Only the conversation's writer (or an admin) can {action}.")


def conversation_check_open(*, conversation: Conversation) -> None:
    """Finished and discarded conversations are reopened before they are edited."""
    if conversation.status != Conversation.Status.DRAFT:
        raise ValidationError(
            f"This conversation is {conversation.get_status_display().lower()}; reopen it to edit."
        )


def _check_can_edit(*, conversation: Conversation, user: AbstractBaseUser) -> None:
    conversation_check_writer(conversation=conversation, user=user)
    conversation_check_open(conversation=conversation)


def _already(*, conversation: Conversation, user: AbstractBaseUser, status: str) -> bool:
    """Whether ``conversation`` already is in ``status``, for its writer: a transition asked
    again is answered as the first was; anyone else is refused as before."""
    conversation_check_writer(conversation=conversation, user=user)
    return conversation.status == status


def _clean_content(content: str) -> str:
    if not isinstance(content, str) or not content.strip():
        raise ValidationError({"content": "Write something first: the message is empty."})
    if problem := text_problem(content):
        raise ValidationError({"content": problem})
    if len(content) > MAX_CONTENT_CHARS:
        limit = f"Messages are limited to {MAX_CONTENT_CHARS} characters"
        raise ValidationError({"content": f"{limit} ({len(content)} given)."})
    return content.strip()


def project_closed_message(slug: str) -> str:
    """Why a conversation cannot be started in the project ``slug`` (not active, or not open
    to the trainer): the API's and the list page's words."""
    return f"No active project '{slug}' is open to you."


def _project_id_unless_closed(*, project_id: int | None) -> int:
    """``project_id`` (None: the default project's id); a ValidationError on ``project``, in
    the words for a closed project named by its slug, when that project takes no new work:
    paused or done, and the default project whenever it is not active. A draft project takes
    work (conversations brought in before it opens). None makes nothing else (the default
    project is made on first use: a project named is no use of it)."""
    if project_id is None:
        project_id = project_default_id()
    closed = (
        Project.objects.filter(pk=project_id)
        .filter(
            Q(status__in=[Project.Status.PAUSED, Project.Status.DONE])
            | (Q(slug=DEFAULT_PROJECT_SLUG) & ~Q(status=Project.Status.ACTIVE))
        )
        .values_list("slug", flat=True)
        .first()
    )
    if closed is not None:
        raise ValidationError({"project": project_closed_message(closed)})
    return project_id


def conversation_create(
    *,
    owner: AbstractBaseUser,
    title: str = "",
    instructions: str = "",
    mode: str = Conversation.Mode.NORMAL,
    project_id: int | None = None,
) -> Conversation:
    """A new conversation of ``owner``'s in the project ``project_id`` (one the caller found
    open to them), or None: the default project, refused as a closed project named by its slug
    is while that one is not active (paused, done: it takes no new work)."""
    for field, text in (("title", title), ("instructions", instructions)):
        if problem := text_problem(text):
            raise ValidationError({field: problem})
    if project_id is None:
        project_id = _project_id_unless_closed(project_id=None)
    conversation = Conversation(
        owner=owner,
        title=title.strip(),
        instructions=instructions.strip(),
        mode=mode,
        project_id=project_id,
    )
    conversation.full_clean(exclude=["active_leaf"])
    conversation.save()
    return conversation


def _sample_offered(*, sample_id: int, author: AbstractBaseUser, parent: Message | None) -> Sample:
    """The suggestion ``sample_id``, when it was offered to ``author`` (admins: anyone) for the
    turn after ``parent``; a field error on ``sample_id`` otherwise."""
    sample = Sample.objects.select_related("job").filter(pk=sample_id).first()
    if sample is None or (sample.job.requested_by_id != author.pk and not is_admin(author)):
        # Another trainer's suggestion is answered like a missing one: ids are not probed.
        raise ValidationError({"sample_id": "No suggestion of yours with that id."})
    parent_id = parent.pk if parent is not None else None
    if not samples_made_for_turn_after(parent_id=parent_id).filter(pk=sample.pk).exists():
        raise ValidationError({"sample_id": "That suggestion was made for another turn."})
    return sample


class Provenance(NamedTuple):
    """Where a turn's text came from, as stored on its message."""

    origin: str
    sample: Sample | None = None
    model_version_id: int | None = None
    edit_distance: int | None = None
    model_original: Message | None = None


HUMAN_WRITTEN = Provenance(origin=Message.Origin.HUMAN)


def _provenance(
    *,
    author: AbstractBaseUser,
    content: str,
    sample_id: int | None,
    role: str,
    parent: Message | None,
    edited: Message | None = None,
) -> Provenance:
    """Origin, sample, model version and edit distance of a message written from a suggestion,
    or (``edited``, no suggestion named) edited from a turn that was: measured against the same
    sample, as if the edit had been made to the suggestion itself. A model-written turn with no
    sample here (imported) is measured against its own text, by the same rule, and so is every
    edit of an edit of it (``model_original``): against the model's text, not the last edit."""
    if sample_id is None and edited is not None and edited.sample_id is not None:
        sample = Sample.objects.select_related("job").get(pk=edited.sample_id)
    elif sample_id is None and edited is not None and edited.origin != Message.Origin.HUMAN:
        model_turn = edited.model_original or edited
        measured = _edit_provenance(
            original=model_turn.content,
            content=content,
            sample=None,
            model_version_id=edited.model_version_id,
        )
        if measured.origin == Message.Origin.HUMAN:
            return measured
        return measured._replace(model_original=model_turn)
    elif sample_id is None:
        return HUMAN_WRITTEN
    else:
        sample = _sample_offered(sample_id=sample_id, author=author, parent=parent)
    if sample.job.role != role:
        raise ValidationError({"sample_id": f"That suggestion is for a {sample.job.role} turn."})
    return _edit_provenance(
        original=sample.text,
        content=content,
        sample=sample,
        model_version_id=sample.job.model_version_id,
    )


def _edit_provenance(
    *, original: str, content: str, sample: Sample | None, model_version_id: int | None
) -> Provenance:
    """``content`` as the model's text ``original`` kept or edited, or as the trainer's own."""
    distance = Levenshtein.distance(original, content)
    if distance and _words_kept(original, content) < MIN_SUGGESTION_WORDS_KEPT:
        # Rewritten, not edited: the trainer's own text, whatever it started from.
        return HUMAN_WRITTEN
    origin = Message.Origin.MODEL if distance == 0 else Message.Origin.MODEL_EDITED
    return Provenance(origin, sample, model_version_id, distance)


# A turn written from a suggestion that keeps less than this share of its words (in order) is
# the trainer's own text (origin human), not an edit of the model's.
MIN_SUGGESTION_WORDS_KEPT = 0.25


def _words_kept(suggestion: str, text: str) -> float:
    """The share of the suggestion's words that the text keeps, in their order."""
    words = suggestion.split()
    return LCSseq.similarity(words, text.split()) / len(words) if words else 1.0


def _message_create(
    *,
    conversation: Conversation,
    parent: Message | None,
    role: str,
    author: AbstractBaseUser,
    content: str,
    sample_id: int | None,
    edited: Message | None = None,
) -> Message:
    """Save a checked turn with its provenance and make it the active leaf."""
    provenance = _provenance(
        author=author,
        content=content,
        sample_id=sample_id,
        role=role,
        parent=parent,
        edited=edited,
    )
    message = Message.objects.create(
        conversation=conversation,
        parent=parent,
        role=role,
        content=content,
        origin=provenance.origin,
        sample=provenance.sample,
        model_version_id=provenance.model_version_id,
        edit_distance=provenance.edit_distance,
        model_original=provenance.model_original,
        author=author,
        guideline_version=guideline_version_ensure_current(project_id=conversation.project_id),
        text_moderation_pending=_needs_own_verdict(
            origin=provenance.origin, content=content, sample=provenance.sample
        ),
    )
    if message.text_moderation_pending:
        _text_moderation_publish(message_ids=[message.pk])
    conversation.active_leaf = message
    conversation.save(update_fields=["active_leaf", "updated_at"])
    return message


@transaction.atomic
def message_append(
    *,
    conversation: Conversation,
    author: AbstractBaseUser,
    content: str,
    parent: Message | None = None,
    role: str | None = None,
    sample_id: int | None = None,
    after_id: int | None = None,
) -> Message:
    """Add a turn after ``parent`` (the conversation's active leaf when not given).

    ``after_id``: the composer's turn was written after this message (0: as the first turn);
    a turn sent from a page that missed later turns (another tab added them, or switched the
    branch) is refused, not appended as the answer to a turn its writer never saw. None: not
    checked (the API, which names ``parent`` instead).
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    _check_can_edit(conversation=conversation, user=author)
    if parent is None and after_id is not None and (conversation.active_leaf_id or 0) != after_id:
        raise ValidationError(
            "The conversation changed since this page was shown (in another tab?): read the "
            "turns above, then send your text again."
        )
    if parent is None:
        parent = conversation.active_leaf
    # The active leaf too: a turn is never written after another conversation's message.
    if parent is not None and parent.conversation_id != conversation.pk:
        raise ValidationError({"parent": OTHER_CONVERSATIONS_MESSAGE})
    expected = next_role_after(message=parent)
    if role is not None and role != expected:
        raise ValidationError({"role": f"The next turn is the {expected}'s (turns alternate)."})
    if parent is not None and message_depth(message=parent) >= MAX_PATH_MESSAGES:
        # As an import refuses longer ones: what the editor writes can be exported and read back.
        raise ValidationError(
            {
                "content": f"A conversation holds at most {MAX_PATH_MESSAGES} turns on one "
                "branch: finish this one and start another."
            }
        )
    message = _message_create(
        conversation=conversation,
        parent=parent,
        role=expected,
        author=author,
        content=_clean_content(content),
        sample_id=sample_id,
    )
    Draft.objects.filter(conversation=conversation, author=author, editing__isnull=True).delete()
    return message


@transaction.atomic
def message_branch(
    *, original: Message, author: AbstractBaseUser, content: str, sample_id: int | None = None
) -> Message:
    """Edit a turn without destroying it: the edit becomes a sibling and the active branch. An
    edit of a model-written turn keeps its provenance (``model_edited`` while it keeps a quarter
    of the suggestion's words, as an edited suggestion does), except the correction of a reply
    a red-team attack names, which is the trainer's own."""
    conversation = Conversation.objects.select_for_update().get(pk=original.conversation_id)
    _check_can_edit(conversation=conversation, user=author)
    content = _clean_content(content)
    if content == original.content and sample_id is None:
        raise ValidationError({"content": "Nothing changed: edit the text to create a branch."})
    # Checked under the lock, so that a double-clicked "Save" (both posts name ``original``)
    # stores one branch, not two identical ones (two identical demonstrations in an export).
    if (
        Message.objects.filter(
            conversation=conversation, parent_id=original.parent_id, is_candidate=False
        )
        .exclude(pk=original.pk)
        .filter(content=content)
        .exists()
    ):
        raise ValidationError(
            {"content": "This turn already has an alternative with this text: switch to it."}
        )
    sibling = _message_create(
        conversation=conversation,
        parent=original.parent,
        role=original.role,
        author=author,
        content=content,
        sample_id=sample_id,
        # A failed reply a red-team attack names is corrected, not edited: the correction is
        # the trainer's (it must not carry the failed sample, nor its moderation flag).
        edited=None if Attack.objects.filter(message=original).exists() else original,
    )
    Draft.objects.filter(conversation=conversation, author=author, editing=original).delete()
    # A red-team correction edited into a new branch: the edit is the attack's correction now
    # (the pair and the demonstration it makes use the better text, not the abandoned one).
    Attack.objects.filter(correction=original).update(correction=sibling)
    # A failed reply marked as an attack, edited into a new branch before it had a correction:
    # the edit is what the model should have said, as the correction box would have written it.
    Attack.objects.filter(message=original, correction__isnull=True).update(correction=sibling)
    return sibling


@transaction.atomic
def branch_switch(*, message: Message, user: AbstractBaseUser) -> Conversation:
    """Show the branch through ``message``: its most recent continuation down to a leaf. The
    branch shown is what finishing checked, so a finished or discarded conversation is reopened
    first, as for any edit. Switching to the branch already shown writes nothing, so its
    ``updated_at`` (the Write list's order) stays, as a reopen asked again does."""
    if message.is_candidate:
        raise ValidationError("That reply was sampled for ranking and is not part of the tree.")
    conversation = Conversation.objects.select_for_update().get(pk=message.conversation_id)
    conversation_check_writer(conversation=conversation, user=user, action="switch branches")
    conversation_check_open(conversation=conversation)
    leaf = branch_leaf(message=message)
    if leaf.pk == conversation.active_leaf_id:
        return conversation
    conversation.active_leaf = leaf
    conversation.save(update_fields=["active_leaf", "updated_at"])
    return conversation


def conversation_lock_of_message(*, message_id: int) -> None:
    """Lock the row of ``message_id``'s conversation until the transaction ends, for a read of
    its status that must hold until then (a ranking stored from one of its turns): a finish,
    discard or reopen (which lock it too) waits, or is waited for and then read. "No key":
    turns and drafts written meanwhile (rows that refer to it) are not made to wait."""
    list(
        Conversation.objects.select_for_update(no_key=True)
        .filter(pk__in=Message.objects.filter(pk=message_id).values("conversation_id"))
        .values_list("pk")
    )


@transaction.atomic
def conversation_finish(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    """Finish a conversation in progress: its active branch (the one shown) needs a user and
    an assistant turn; turns on other branches do not count. Finishing it again (a retried
    request) changes nothing and is not an error: it keeps the first finish's time."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if _already(conversation=conversation, user=user, status=Conversation.Status.FINISHED):
        return conversation
    _check_can_edit(conversation=conversation, user=user)
    path = message_path(message=conversation.active_leaf) if conversation.active_leaf else []
    roles = {m.role for m in path}
    if not {Message.Role.USER, Message.Role.ASSISTANT} <= roles:
        raise ValidationError(
            "A finished conversation needs at least one user and one assistant turn on the "
            "branch shown (turns on other branches do not count)."
        )
    conversation.status = Conversation.Status.FINISHED
    conversation.finished_at = timezone.now()
    conversation.save(update_fields=["status", "finished_at", "updated_at"])
    return conversation


@transaction.atomic
def conversation_discard(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    """Discard a conversation in progress; discarding it again changes nothing."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if _already(conversation=conversation, user=user, status=Conversation.Status.DISCARDED):
        return conversation
    _check_can_edit(conversation=conversation, user=user)
    conversation.status = Conversation.Status.DISCARDED
    conversation.save(update_fields=["status", "updated_at"])
    return conversation


@transaction.atomic
def conversation_reopen(*, conversation: Conversation, user: AbstractBaseUser) -> Conversation:
    """Make a finished or discarded conversation editable again. Reopening one already in
    progress (a retried request) changes nothing and is not an error: as finish and discard
    asked again, it writes nothing, so its ``updated_at`` (the Write list's order) stays."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
    conversation_check_writer(conversation=conversation, user=user, action="reopen it")
    if conversation.status == Conversation.Status.DRAFT:
        return conversation
    conversation.status = Conversation.Status.DRAFT
    conversation.finished_at = None
    conversation.save(update_fields=["status", "finished_at", "updated_at"])
    return conversation


def draft_editing_problem(*, conversation: Conversation, editing: Message) -> str | None:
    """Why a draft of ``conversation`` cannot edit ``editing`` (None: it can)."""
    if editing.conversation_id != conversation.pk:
        return OTHER_CONVERSATIONS_MESSAGE
    return None


def draft_role_problem(*, role: str, editing: Message | None) -> str | None:
    """Why a draft cannot be typed for ``role`` (None: it can; "" is not known)."""
    if role not in ("", *dict(COMPOSER_ROLES)):
        return "A draft is typed for the user's or the assistant's turn."
    if role and editing is not None:
        return "An edit's draft is the edited turn's side: it takes none."
    return None


@transaction.atomic
def draft_save(
    *,
    conversation: Conversation,
    author: AbstractBaseUser,
    content: str,
    editing: Message | None = None,
    sample_id: int | None = None,
    after_id: int | None = None,
    unsent: bool = False,
    role: str = "",
) -> Draft:
    """Upsert the author's draft; an over-long draft is refused (the page keeps the text).

    A finished or discarded conversation takes no draft, as it takes no turn (reopen it
    first), except ``unsent``: text a page sent that was not written where it was meant to go
    (the composer's turn refused because the conversation was closed meanwhile in another tab,
    a correction for an attack mark withdrawn meanwhile), kept so that Reopen brings it back.

    ``after_id``: the composer's turn follows this message (0: the first turn). A composer's
    draft that arrives once that turn was sent (the save was on its way while the trainer
    pressed Send, or the page is stale) is refused, so the sent text never comes back as the
    next turn's draft. None: not checked (the API, edits). The checks lock the conversation's
    row, as ``message_append`` does, so a save racing a send (or a finish or discard) cannot
    interleave with it.

    ``role``: the composer's: the side whose turn the text is typed for ("" not known), so the
    editor still asks before it goes as the other side's once that side's turn was sent
    elsewhere. An edit's draft has none.
    """
    if conversation.owner_id != author.pk and not is_admin(author):
        raise PermissionDenied("You can only keep drafts in your own conversations.")
    if problem := draft_role_problem(role=role, editing=editing):
        raise ValidationError({"role": problem})
    locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
    if not unsent:
        conversation_check_open(conversation=locked)
    if editing is None and after_id is not None and (locked.active_leaf_id or 0) != after_id:
        raise ValidationError(
            {"content": "This turn was sent or the conversation changed: reload the page."}
        )
    if len(content) > MAX_CONTENT_CHARS:
        raise ValidationError({"content": f"Drafts are limited to {MAX_CONTENT_CHARS} characters."})
    if problem := text_problem(content):
        raise ValidationError({"content": problem})
    if editing is not None and (
        problem := draft_editing_problem(conversation=conversation, editing=editing)
    ):
        raise ValidationError({"editing": problem})
    if sample_id is not None:
        # A suggestion offered for the turn this draft writes: after the edited message's
        # parent, or after the active leaf for the composer.
        parent = editing.parent if editing is not None else conversation.active_leaf
        _sample_offered(sample_id=sample_id, author=author, parent=parent)
    draft, _ = Draft.objects.update_or_create(
        conversation=conversation,
        author=author,
        editing=editing,
        defaults={"content": content, "sample_id": sample_id, "role": role},
    )
    return draft


def draft_discard(
    *, conversation: Conversation, author: AbstractBaseUser, editing: Message | None
) -> None:
    Draft.objects.filter(conversation=conversation, author=author, editing=editing).delete()


SUGGESTION_ROLES_MESSAGE = (
    "Suggestions are for the user's or the assistant's turn: role must be 'user' or 'assistant'."
)


def suggestion_request(
    *, conversation: Conversation, author: AbstractBaseUser, n: int, role: str | None = None
):
    """Ask the active policy for ``n`` suggestions for the next turn of the active branch
    (``job.publication`` says whether the job queue took it; the job is kept either way).
    ``role``, when given, is checked: a role other than the user's or the assistant's is
    refused as such, either of them as not the next turn's when it is not."""
    if role and role not in dict(COMPOSER_ROLES):
        raise ValidationError({"role": SUGGESTION_ROLES_MESSAGE})
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
    """Store sampled completions answering the same turn as ``source``, marked as ranking
    candidates: they stay out of the writer's tree (see ``Message.is_candidate``)."""
    return Message.objects.bulk_create(
        [
            Message(
                conversation_id=source.conversation_id,
                parent_id=source.parent_id,
                role=source.role,
                content=sample.text,
                is_candidate=True,
                origin=Message.Origin.MODEL,
                sample=sample,
                model_version_id=sample.job.model_version_id,
            )
            for sample in samples
        ]
    )


# ---- import ------------------------------------------------------------------------------------


def conversations_import(
    *,
    lines: Iterable[bytes | str],
    owner: AbstractBaseUser,
    title_prefix: str = "",
    dry_run: bool = False,
    project_id: int | None = None,
    allow_duplicates: bool = False,
) -> ImportReport:
    """Import a whole file or nothing: every line is checked first; when all are valid they are
    saved as finished, imported conversations owned by ``owner`` in one transaction, and when
    any is not, nothing is saved and ``errors`` lists each invalid line with its number.

    A valid line whose conversation is already imported is skipped, not saved, and listed in
    ``skipped`` with its number: one whose fingerprint (its turns, not its title:
    ``importing.conversation_fingerprint``) a conversation of the project (the default project
    when ``project_id`` is None) has, or an earlier line of the file has. Conversations written
    in the app have none to match, and those of another project are not looked at.
    ``allow_duplicates`` saves every valid line and skips none. Each saved conversation keeps
    its fingerprint either way.

    Imports into one project take turns: the transaction holds a lock on the project's imports
    (PostgreSQL: an advisory transaction lock; SQLite: its transactions begin IMMEDIATE, so
    every write waits for the one under way) from before it reads the fingerprints the project
    holds until it commits, so the same file imported twice at once is saved once.

    With ``dry_run`` every line is checked, and counted in ``created`` or ``skipped`` as it
    would be now, but nothing is saved.
    A ``title_prefix`` that is not one line (it starts every title) is a ValidationError
    naming it, before any line is read; so is the project (``project_id``; None: the default
    project) while it is not active, in the words ``conversation_create`` refuses a closed
    default project with (a dry run too).
    """
    if problem := one_line_problem(title_prefix):
        raise ValidationError({"title_prefix": problem})
    project_id = _project_id_unless_closed(project_id=project_id)
    report = ImportReport()
    valid: list[tuple[int, ParsedConversation]] = []
    for line_number, parsed in parsed_lines(lines, title_prefix=title_prefix):
        if isinstance(parsed, LineError):
            report.errors.append((line_number, str(parsed)))
        else:
            report.valid += 1
            if not report.errors:
                valid.append((line_number, parsed))  # kept only while the file is importable
    if report.errors:
        return report
    if dry_run:
        report.created = len(
            _conversations_not_imported(valid, project_id, allow_duplicates, report)
        )
        return report
    with transaction.atomic():
        _project_imports_lock(project_id=project_id)
        to_create = _conversations_not_imported(valid, project_id, allow_duplicates, report)
        report.created = len(to_create)
        # The model-written turns, filtered on a worker: published once for the whole file,
        # by the ids the saves returned (a query by the conversations' ids would take one
        # parameter per conversation, past SQLite's limit on a statement's parameters).
        pending: list[int] = []
        for parsed in to_create:
            conversation, waiting = _conversation_import(
                parsed=parsed, owner=owner, project_id=project_id
            )
            report.conversation_ids.append(conversation.pk)
            pending.extend(waiting)
        _text_moderation_publish(message_ids=pending)
    return report


def _conversations_not_imported(
    valid: list[tuple[int, ParsedConversation]],
    project_id: int,
    allow_duplicates: bool,
    report: ImportReport,
) -> list[ParsedConversation]:
    """The conversations of ``valid`` to save; the others' lines go to ``report.skipped``."""
    if allow_duplicates:
        return [parsed for _, parsed in valid]
    in_project = conversation_fingerprints_in_project(
        project_id=project_id, fingerprints={parsed.fingerprint for _, parsed in valid}
    )
    first_line: dict[str, int] = {}
    to_create = []
    for line_number, parsed in valid:
        fingerprint = parsed.fingerprint
        if fingerprint in in_project:
            report.skipped.append((line_number, "already imported into the project"))
        elif fingerprint in first_line:
            report.skipped.append((line_number, f"repeats line {first_line[fingerprint]}"))
        else:
            first_line[fingerprint] = line_number
            to_create.append(parsed)
    return to_create


def _project_imports_lock(*, project_id: int) -> None:
    """Hold every other import into the project until this transaction ends. PostgreSQL: an
    advisory lock on the project's imports, which holds up nothing else (a pool fill or a
    guidelines save locks the project's row); SQLite runs one write at a time
    (``transaction_lock``)."""
    transaction_lock(f"tandem.conversations-import:{project_id}")


def _conversation_import(
    *, parsed: ParsedConversation, owner: AbstractBaseUser, project_id: int | None
) -> tuple[Conversation, list[int]]:
    """Save one parsed conversation as a finished import; it, and the ids of its turns that
    wait for the content filter's verdict (for the caller to publish)."""
    conversation = Conversation.objects.create(
        **({"project_id": project_id} if project_id is not None else {}),
        owner=owner,
        title=parsed.title,
        fingerprint=parsed.fingerprint,
        source=Conversation.Source.IMPORTED,
        status=Conversation.Status.FINISHED,
        finished_at=timezone.now(),
    )
    # Inserted without parents first (bulk_create returns ids on PostgreSQL and SQLite), then
    # linked into a chain: three queries for the whole conversation instead of one per turn.
    messages = Message.objects.bulk_create(
        Message(
            conversation=conversation,
            role=m.role,
            content=m.content,
            origin=m.origin,
            text_moderation_pending=_needs_own_verdict(origin=m.origin, content=m.content),
        )
        for m in parsed.messages
    )
    for parent, child in pairwise(messages):
        child.parent = parent
    Message.objects.bulk_update(messages[1:], ["parent"])
    conversation.active_leaf = messages[-1]
    conversation.save(update_fields=["active_leaf", "updated_at"])
    return conversation, [message.pk for message in messages if message.text_moderation_pending]


# ---- the content filter on texts that are no sample's ------------------------------------------

MODERATE_TEXTS_TASK = "labeling.conversations.tasks.moderate_message_texts"
# Message ids per published task, and texts per call of the filter.
TEXT_MODERATION_BATCH = 200


def _needs_own_verdict(*, origin: str, content: str, sample: Sample | None = None) -> bool:
    """Whether a message saved now waits for the content filter's verdict on its own text: a
    model-written text that is not its sample's (edited from a suggestion, or brought in by an
    import with no sample), while a filter is configured. A sample's text was filtered when it
    was sampled; a human's is not filtered."""
    if origin not in (Message.Origin.MODEL, Message.Origin.MODEL_EDITED):
        return False
    if sample is not None and content == sample.text:
        return False
    return content_filter_configured()


def _text_moderation_publish(*, message_ids: list[int]) -> None:
    """Publish the filtering of these messages' texts to a worker once the transaction commits.
    A broker that is down is logged by ``enqueue``, never raised: the messages stay marked
    ``text_moderation_pending`` and the periodic sweep filters them."""
    for start in range(0, len(message_ids), TEXT_MODERATION_BATCH):
        chunk = message_ids[start : start + TEXT_MODERATION_BATCH]
        enqueue(MODERATE_TEXTS_TASK, args=(chunk,), queue=Queue.DEFAULT)


def message_texts_moderate(
    *,
    message_ids: Iterable[int] | None = None,
    created_before: datetime | None = None,
    most: int | None = None,
) -> int:
    """Filter the texts of the messages still waiting for a verdict on their own words (those
    of ``message_ids``; every one when None, created before ``created_before`` if given), in
    batches, and mark each batch done, with the filter that judged it; how many were filtered
    (a run tries about ``most`` at the most: the batch that reaches it is the last). Runs on a
    worker (it loads the configured filter, which may be a classifier model). Each batch is
    filtered in a transaction holding its messages' rows (PostgreSQL), and one held by another
    run is passed over: the task of a save and the sweep, or two sweeps, filter different
    messages. Idempotent: a text the filter's version already judged is not judged again
    (``texts_moderate``), and a message filtered twice stores one verdict. A batch the filter
    raises on is logged and stays waiting (the sweep tries it again), and the batches after it
    are filtered. With no filter configured, or one that cannot run (``content_filter_ready``:
    recorded and logged, not raised), nothing is filtered and the messages stay waiting."""
    content_filter = _ready_filter()
    if content_filter is None:
        return 0
    done, _ = _message_texts_moderate(
        content_filter, message_ids=message_ids, created_before=created_before, most=most
    )
    return done


def _ready_filter() -> ContentFilter | None:
    """The configured filter, ready to run; None when there is none, or it cannot run (then
    recorded and logged by ``content_filter_ready``: the texts wait for it, nothing raised)."""
    try:
        return content_filter_ready()
    except ContentFilterUnavailable:
        return None


def message_texts_sweep(
    *,
    created_before: datetime,
    most: int,
    scan: int,
    samples_judged: Callable[[dict[int, ModerationResult]], None] | None = None,
) -> int:
    """The periodic sweep: filter the messages still waiting for a verdict on their own words
    that were saved before ``created_before`` (``message_texts_moderate``), then the samples
    stored while the filter could not run (``samples_moderate_pending``), then, in the room
    they leave of ``most``, those judged by no filter configured now among the next ``scan``
    messages of the walk (``message_texts_rejudge``), so that these never hold up the ones
    waiting; how many were filtered. A filter that cannot run (``content_filter_ready``) stops
    the sweep before it starts, recorded and logged, not raised: nothing is filtered, no message
    is marked to be judged again, and the walk stays where it was, so no verdict shown is traded
    for "not judged yet" while nothing can judge. ``samples_judged``: called with the verdicts
    (by sample id) of each batch of those samples, in the transaction that marks it judged."""
    content_filter = _ready_filter()
    if content_filter is None:
        return 0
    done, tried = _message_texts_moderate(content_filter, created_before=created_before, most=most)
    # Then the samples a generation job stored while the filter could not run.
    samples_done, samples_tried = samples_moderate_pending(
        content_filter=content_filter, most=most - tried, then=samples_judged
    )
    rejudged = _message_texts_rejudge(content_filter, most=most - tried - samples_tried, scan=scan)
    return done + samples_done + rejudged


# The walk of the messages table that ``message_texts_rejudge`` goes on with at each run.
REJUDGE_WALK = "message_texts_rejudge"


def message_texts_rejudge(*, most: int, scan: int) -> int:
    """Judge again the model-written messages whose verdict is by no filter configured now
    (``CONTENT_FILTER`` or its settings changed since), as one walk; how many were judged.
    A message whose text is no sample's is marked for the filter again, and filtered on its
    own text, when its verdict on it is by another filter or another version of it, or by none
    (saved while no filter was configured, or the sample whose text it was deleted since). A
    suggestion used as it is (its text its sample's) is judged as its sample: its sample is
    filtered when it has no verdict by the filter configured now, and that verdict is the one
    shown wherever the sample is (the other samples, never shown again, keep theirs). A run
    looks at the next ``scan`` messages at the most, by id, from where the last run stopped
    (``MessageWalk``), and takes ``most`` of them at the most: the walk goes on after the last
    one taken, or after the last one looked at when fewer were found, and starts again at the
    first message once it has looked at the last. So a run's work is bounded whatever the
    table's size (the steady state, when none is to be judged again, included), and every such
    message is reached within one whole walk. One still waiting is left to
    ``message_texts_moderate``. Samples the filter raises on are logged and keep the verdict
    they had; the walk reaches them again. A filter that cannot run marks nothing, as in
    ``message_texts_sweep``."""
    content_filter = _ready_filter()
    if content_filter is None:
        return 0
    return _message_texts_rejudge(content_filter, most=most, scan=scan)


def _message_texts_rejudge(content_filter: ContentFilter, *, most: int, scan: int) -> int:
    """``message_texts_rejudge`` with ``content_filter``, ready to run."""
    if most <= 0 or scan <= 0:
        return 0
    name, version = content_filter.name, content_filter.version
    with transaction.atomic():
        # Held to the commit: a sweep running beside this one goes on after this run's share.
        walk, _ = MessageWalk.objects.select_for_update().get_or_create(name=REJUDGE_WALK)
        window = Message.objects.filter(pk__gt=walk.after_id)
        last_looked_at = window.order_by("pk").values_list("pk", flat=True)[scan - 1 : scan].first()
        if last_looked_at is not None:
            window = window.filter(pk__lte=last_looked_at)
        as_sample = Q(sample__isnull=False, content=F("sample__text"))
        found = list(
            window.filter(
                origin__in=[Message.Origin.MODEL, Message.Origin.MODEL_EDITED],
                text_moderation_pending=False,
            )
            .filter(
                (_OWN_WORDS & ~Q(text_filter_name=name, text_filter_version=version))
                | (
                    as_sample
                    & ~moderation_of_sample_exists(
                        sample=OuterRef("sample_id"), name=name, version=version
                    )
                )
            )
            .annotate(as_sample=ExpressionWrapper(as_sample, output_field=BooleanField()))
            .order_by("pk")
            .values_list("pk", "sample_id", "as_sample")[:most]
        )
        if len(found) == most:
            walk.after_id = found[-1][0]
        else:  # the window was gone through: on after it, or from the start at the table's end
            walk.after_id = last_looked_at or 0
        walk.save(update_fields=["after_id"])
        ids = [pk for pk, _, as_sample in found if not as_sample]
        Message.objects.filter(pk__in=ids, text_moderation_pending=False).update(
            text_moderation_pending=True
        )
    as_samples = [(pk, sample_id) for pk, sample_id, as_sample in found if as_sample]
    done = _samples_rejudge(content_filter, as_samples) if as_samples else 0
    return done + (_message_texts_moderate(content_filter, message_ids=ids)[0] if ids else 0)


def _samples_rejudge(content_filter: ContentFilter, messages: list[tuple[int, int]]) -> int:
    """Filter the samples of these (message id, sample id) pairs, in batches; how many of the
    messages were judged. A batch the filter raises on is logged and passed over."""
    done = 0
    for start in range(0, len(messages), TEXT_MODERATION_BATCH):
        batch = messages[start : start + TEXT_MODERATION_BATCH]
        samples = list(Sample.objects.filter(pk__in={sample_id for _, sample_id in batch}))
        try:
            samples_moderate(samples=samples, content_filter=content_filter)
        except Exception:
            # Those samples keep the verdict they had; the walk comes back to them.
            log.exception(
                "The content filter failed on the samples of messages %s to %s.",
                batch[0][0],
                batch[-1][0],
            )
        else:
            done += len(batch)
    return done


# A model-written message whose text is no sample's (``_needs_own_verdict``).
_OWN_WORDS = Q(sample__isnull=True) | ~Q(content=F("sample__text"))


def _message_texts_moderate(
    content_filter: ContentFilter,
    *,
    message_ids: Iterable[int] | None = None,
    created_before: datetime | None = None,
    most: int | None = None,
) -> tuple[int, int]:
    """``message_texts_moderate`` with ``content_filter``, ready to run: how many messages
    were filtered, and how many tried."""
    waiting = Message.objects.filter(text_moderation_pending=True).only("pk", "content")
    if message_ids is not None:
        waiting = waiting.filter(pk__in=list(message_ids))
    if created_before is not None:
        waiting = waiting.filter(created_at__lt=created_before)

    def judge(batch: list[Message]) -> None:
        texts_moderate(texts=[message.content for message in batch], content_filter=content_filter)
        Message.objects.filter(pk__in=[message.pk for message in batch]).update(
            text_moderation_pending=False,
            text_filter_name=content_filter.name,
            text_filter_version=content_filter.version,
        )

    return waiting_judge(
        waiting, judge=judge, most=most, batch_size=TEXT_MODERATION_BATCH, noun="messages"
    )
