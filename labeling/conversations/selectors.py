"""Reads of conversations: lists, the active branch, drafts, and what ranking and exports take."""

import random
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, F, Func, IntegerField, Max, Min, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404

from accounts.roles import is_admin
from config.querysets import values_in_chunks
from labeling.conversations.models import Conversation, Draft, Message
from sampler.generation.models import GenerationJob, Sample
from sampler.generation.selectors import generation_job_get


def _active_path_length() -> Func:
    """How many messages the branch the editor shows holds: the path from the conversation's
    active leaf up to its root (0 with no active leaf), walked by a recursive query per row, so
    a page of conversations is still one query. Alternatives (edited turns' siblings) and
    replies sampled for ranking are off that path, so they are not counted."""
    table = Message._meta.db_table
    return Func(
        F("active_leaf_id"),
        template=(
            "(WITH RECURSIVE active_path(id, parent_id) AS ("
            f"SELECT leaf.id, leaf.parent_id FROM {table} leaf WHERE leaf.id = %(expressions)s "
            f"UNION ALL SELECT turn.id, turn.parent_id FROM {table} turn "
            "JOIN active_path ON turn.id = active_path.parent_id"
            ") SELECT COUNT(*) FROM active_path)"
        ),
        output_field=IntegerField(),
    )


# Fingerprints asked about per query: far under SQLite's limit on a statement's parameters.
FINGERPRINT_LOOKUP_CHUNK = 500


def conversation_fingerprints_in_project(
    *, project_id: int, fingerprints: Iterable[str]
) -> set[str]:
    """Those of ``fingerprints`` that a conversation of the project has (an imported one:
    ``Conversation.fingerprint``), asked ``FINGERPRINT_LOOKUP_CHUNK`` at a time."""
    asked, found = sorted(set(fingerprints)), set()
    for start in range(0, len(asked), FINGERPRINT_LOOKUP_CHUNK):
        found.update(
            Conversation.objects.filter(
                project_id=project_id,
                fingerprint__in=asked[start : start + FINGERPRINT_LOOKUP_CHUNK],
            )
            .order_by()
            .values_list("fingerprint", flat=True)
        )
    return found


def conversation_list(
    *, user: AbstractBaseUser, status: str = "", search: str = ""
) -> QuerySet[Conversation]:
    """Conversations visible to ``user``: their own, or everyone's for admins, each with its
    ``turn_count`` (the turns on the branch shown) and when its last turn was written."""
    in_tree = Q(messages__is_candidate=False)
    conversations = Conversation.objects.select_related("owner", "project").annotate(
        turn_count=_active_path_length(),
        last_message_at=Max("messages__created_at", filter=in_tree),
    )
    if not is_admin(user):
        conversations = conversations.filter(owner=user)
    if status:
        conversations = conversations.filter(status=status)
    if search:
        conversations = conversations.filter(
            Q(title__icontains=search) | Q(instructions__icontains=search)
        )
    return conversations.order_by("-updated_at")


def conversation_counts_for_user(*, user: AbstractBaseUser) -> dict[str, int]:
    counts = Conversation.objects.filter(owner=user).aggregate(
        draft=Count("id", filter=Q(status=Conversation.Status.DRAFT)),
        finished=Count("id", filter=Q(status=Conversation.Status.FINISHED)),
    )
    return {key: value or 0 for key, value in counts.items()}


# What a path's messages carry (``message_path``, ``message_paths``).
_PATH_FIELDS = ("id", "parent_id", "role", "content", "conversation_id")


def message_path(*, message: Message) -> list[Message]:
    """The messages from the root of the tree down to ``message``, oldest first."""
    by_id = {
        m.pk: m
        for m in Message.objects.filter(conversation_id=message.conversation_id).only(*_PATH_FIELDS)
    }
    return _path_to(by_id.get(message.pk, message), by_id)


def message_paths(*, message_ids: Iterable[int]) -> dict[int, list[Message]]:
    """``message_path`` of each of ``message_ids`` (those that exist), read in one query for
    all: the messages of the conversations that hold them."""
    ids = set(message_ids)
    if not ids:
        return {}
    conversations = Message.objects.filter(pk__in=ids).values("conversation_id")
    by_id = {
        m.pk: m
        for m in Message.objects.filter(conversation_id__in=conversations).only(*_PATH_FIELDS)
    }
    return {pk: _path_to(by_id[pk], by_id) for pk in ids if pk in by_id}


def _path_to(message: Message | None, by_id: dict[int, Message]) -> list[Message]:
    path: list[Message] = []
    current = message
    while current is not None:
        path.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return list(reversed(path))


def message_depth(*, message: Message) -> int:
    """How many messages the path from the root down to ``message`` holds (``message`` too),
    read from the conversation's ids alone."""
    parents = dict(
        Message.objects.filter(conversation_id=message.conversation_id).values_list(
            "id", "parent_id"
        )
    )
    depth, current = 0, message.pk
    while current is not None and depth <= len(parents):
        depth += 1
        current = parents.get(current)
    return depth


def branch_leaf(*, message: Message) -> Message:
    """Follow the most recent child from ``message`` down to a leaf."""
    children: dict[int | None, list[Message]] = {}
    for candidate in Message.objects.filter(
        conversation_id=message.conversation_id, is_candidate=False
    ).order_by("created_at", "id"):
        children.setdefault(candidate.parent_id, []).append(candidate)
    current = message
    while children.get(current.pk):
        current = children[current.pk][-1]
    return current


@dataclass(frozen=True)
class TranscriptEntry:
    message: Message
    sibling_index: int  # 1-based position among the alternatives at this turn
    sibling_count: int
    previous_sibling_id: int | None
    next_sibling_id: int | None


def conversation_get_for_user(*, conversation_id: int, user: AbstractBaseUser) -> Conversation:
    """The conversation if ``user`` may see it (its writer, or an admin); 404 otherwise."""
    conversations = Conversation.objects.select_related("owner", "active_leaf", "project")
    if not is_admin(user):
        conversations = conversations.filter(owner=user)
    return get_object_or_404(conversations, pk=conversation_id)


def message_get_for_user(*, message_id: int, user: AbstractBaseUser) -> Message:
    """The message if ``user`` may see its conversation; 404 otherwise (as for conversations),
    and 404 for replies sampled for ranking (not part of the writer's tree)."""
    messages = Message.objects.select_related("conversation").filter(is_candidate=False)
    if not is_admin(user):
        messages = messages.filter(conversation__owner=user)
    return get_object_or_404(messages, pk=message_id)


def conversation_transcript(*, conversation: Conversation) -> list[TranscriptEntry]:
    """The active branch, root first, each turn with its alternatives for "< 2/3 >" (the
    writer's own; replies sampled for ranking are not alternatives of the writer's tree)."""
    messages = list(
        Message.objects.filter(conversation=conversation, is_candidate=False)
        .select_related("sample", "model_version", "attack", "correction_of")
        .order_by("created_at", "id")
    )
    if conversation.active_leaf_id is None or not messages:
        return []
    by_id = {m.pk: m for m in messages}
    siblings: dict[int | None, list[int]] = {}
    for message in messages:
        siblings.setdefault(message.parent_id, []).append(message.pk)
    path: list[Message] = []
    current = by_id.get(conversation.active_leaf_id)
    while current is not None:
        path.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    entries = []
    for message in reversed(path):
        group = siblings[message.parent_id]
        position = group.index(message.pk)
        entries.append(
            TranscriptEntry(
                message=message,
                sibling_index=position + 1,
                sibling_count=len(group),
                previous_sibling_id=group[position - 1] if position > 0 else None,
                next_sibling_id=group[position + 1] if position + 1 < len(group) else None,
            )
        )
    return entries


def next_role_after(*, message: Message | None) -> str:
    """Only a user turn is answered by the assistant; after nothing, a system message or an
    assistant turn, the user speaks."""
    if message is not None and message.role == Message.Role.USER:
        return Message.Role.ASSISTANT
    return Message.Role.USER


def next_role(*, conversation: Conversation) -> str:
    return next_role_after(message=conversation.active_leaf)


def draft_get(
    *, conversation: Conversation, author: AbstractBaseUser, editing_id: int | None = None
) -> Draft | None:
    return (
        Draft.objects.select_related("suggestion_job", "sample")
        .filter(conversation=conversation, author=author, editing_id=editing_id)
        .first()
    )


def suggestion_job_get(
    *, conversation: Conversation, job_id: int, user: AbstractBaseUser
) -> GenerationJob:
    """The suggestion job ``job_id`` if ``user`` may see it (``generation_job_get``) and it was
    asked for in ``conversation``: for a turn of it, or, for an empty conversation (no turn to
    follow), the one its draft holds. 404 otherwise, so a job of one conversation is never
    shown, cancelled or retried under another one's editor."""
    of_conversation = GenerationJob.objects.filter(
        pk=job_id, purpose=GenerationJob.Purpose.SUGGESTION
    ).filter(
        Q(prefix_message__conversation=conversation)
        | Q(
            prefix_message__isnull=True,
            pk__in=Draft.objects.filter(conversation=conversation).values("suggestion_job_id"),
        )
    )
    if not of_conversation.exists():
        raise Http404("No such suggestions in this conversation.")
    return generation_job_get(job_id=job_id, user=user)


def samples_made_for_turn_after(*, parent_id: int | None) -> QuerySet[Sample]:
    """Samples of jobs asked for the turn after message ``parent_id``. None: a conversation's
    first turn, which only a suggestion asked for with an empty prompt was made for. Other jobs
    with no prefix message were made for another prompt: asked for from a list of messages (the
    API, the playground), or whose prefix message was deleted since."""
    if parent_id is not None:
        return Sample.objects.filter(job__prefix_message_id=parent_id)
    return Sample.objects.filter(
        job__prefix_message__isnull=True,
        job__purpose=GenerationJob.Purpose.SUGGESTION,
        job__prompt_messages=[],
    )


def suggestion_for_next_turn(*, sample_id: int | None, conversation: Conversation) -> int | None:
    """``sample_id`` when that suggestion was made for the conversation's next turn (after its
    active leaf); None otherwise: a suggestion put into the composer before the trainer edited
    or switched an earlier turn is for a turn that is no longer next, and the text is theirs."""
    if sample_id is None:
        return None
    made_for_next_turn = (
        samples_made_for_turn_after(parent_id=conversation.active_leaf_id)
        .filter(pk=sample_id)
        .exists()
    )
    return sample_id if made_for_next_turn else None


def edit_drafts(*, conversation: Conversation, author: AbstractBaseUser) -> dict[int, Draft]:
    drafts = Draft.objects.filter(conversation=conversation, author=author, editing__isnull=False)
    return {draft.editing_id: draft for draft in drafts}


def ranking_source_candidates(
    *, origins: list[str], project_id: int | None = None
) -> QuerySet[Message]:
    """Model-written assistant turns of finished conversations that answer a user turn and are
    not themselves alternatives sampled for ranking, nor the source of a task that holds it
    (every task does but one whose preparation failed for a reason the message had no part
    in; ``project_id``: of that project's conversations only)."""
    messages = Message.objects.filter(
        conversation__status=Conversation.Status.FINISHED,
        role=Message.Role.ASSISTANT,
        origin__in=origins,
        parent__role=Message.Role.USER,
        is_candidate=False,
    ).exclude(ranking_tasks_as_source__holds_source=True)
    if project_id is not None:
        messages = messages.filter(conversation__project_id=project_id)
    return messages


def ranking_source_pick(
    *, rng: random.Random, origins: list[str], attempts: int = 32, project_id: int | None = None
) -> Message | None:
    """A random eligible message, each conversation equally likely whatever its length.

    A random point of the finished conversations' id range is sought forward to the next
    conversation with an eligible message (an index seek: no full scan, however many messages
    there are). Alone, that seek favours a conversation in proportion to the run of ids before
    it (drafts, human-written or used-up conversations), so the find is kept with probability
    1 / that run, measured by one more seek back to the previous eligible conversation: every
    eligible conversation is then equally likely per attempt. When every attempt is refused
    (eligible conversations are sparse in the id range), one is drawn uniformly by offset from
    their count instead: a scan, but of the few that are left.
    """
    eligible = ranking_source_candidates(origins=origins, project_id=project_id)
    finished = Conversation.objects.filter(status=Conversation.Status.FINISHED)
    if project_id is not None:
        finished = finished.filter(project_id=project_id)
    bounds = finished.aggregate(low=Min("id"), high=Max("id"))
    if bounds["low"] is None:
        return None
    conversation_ids = eligible.order_by("conversation_id").values_list(
        "conversation_id", flat=True
    )
    # A conversation can be used up by a concurrent task creation between the seek and the
    # read of its messages: then draw again.
    for _ in range(3):
        chosen = _seek_conversation(
            rng=rng, conversation_ids=conversation_ids, bounds=bounds, attempts=attempts
        )
        if chosen is None:
            distinct = conversation_ids.distinct()
            count = distinct.count()
            if count == 0:
                return None
            chosen = distinct[rng.randrange(count)]
        ids = list(eligible.filter(conversation_id=chosen).values_list("id", flat=True))
        if ids:
            return Message.objects.select_related("conversation", "parent").get(pk=rng.choice(ids))
    return None


def _seek_conversation(
    *, rng: random.Random, conversation_ids: QuerySet, bounds: dict, attempts: int
) -> int | None:
    """An eligible conversation id, uniformly, by seek and rejection; None when all refused."""
    for _ in range(attempts):
        start = rng.randint(bounds["low"], bounds["high"])
        conversation_id = conversation_ids.filter(conversation_id__gte=start).first()
        if conversation_id is None:
            continue
        previous = conversation_ids.filter(conversation_id__lt=conversation_id).last()
        run = conversation_id - (bounds["low"] - 1 if previous is None else previous)
        if rng.random() * run < 1:
            return conversation_id
    return None


def demonstration_conversations(
    *,
    finished_bounds: dict,
    exclude_owner_ids: tuple[int, ...] = (),
    red_team: str = "include",
    project_ids: tuple[int, ...] = (),
) -> QuerySet[Conversation]:
    """Finished conversations; ``red_team``: "include", "exclude" or "only" red-team ones;
    ``project_ids``: of those projects only (empty: every project)."""
    conversations = Conversation.objects.filter(status=Conversation.Status.FINISHED)
    if project_ids:
        conversations = conversations.filter(project_id__in=project_ids)
    if red_team == "exclude":
        conversations = conversations.exclude(mode=Conversation.Mode.RED_TEAM)
    elif red_team == "only":
        conversations = conversations.filter(mode=Conversation.Mode.RED_TEAM)
    for lookup, value in finished_bounds.items():
        conversations = conversations.filter(**{f"finished_at__{lookup}": value})
    if exclude_owner_ids:
        conversations = conversations.exclude(owner_id__in=exclude_owner_ids)
    return conversations


def demonstration_chunks(
    *,
    finished_bounds: dict,
    exclude_owner_ids: tuple[int, ...] = (),
    chunk_size: int = 500,
    red_team: str = "include",
    project_ids: tuple[int, ...] = (),
):
    """Root-to-leaf paths of finished conversations, ``chunk_size`` conversations at a time.

    Yields lists of ``(conversation_id, owner_id, path)``. Alternatives sampled for ranking
    are not demonstrations and are left out, and so are replies marked as successful attacks
    (with what follows them); a path ends at its last assistant turn.
    """
    conversations = demonstration_conversations(
        finished_bounds=finished_bounds,
        exclude_owner_ids=exclude_owner_ids,
        red_team=red_team,
        project_ids=project_ids,
    )
    for rows in values_in_chunks(conversations, "owner_id", chunk_size=chunk_size):
        chunk = [(row["pk"], row["owner_id"]) for row in rows]
        children: dict[tuple[int, int | None], list[Message]] = {}
        for message in (
            Message.objects.filter(
                conversation_id__in=[pk for pk, _ in chunk],
                attack__isnull=True,
                is_candidate=False,
            )
            .only(
                "id",
                "conversation_id",
                "parent_id",
                "role",
                "content",
                "origin",
                "guideline_version_id",
            )
            .order_by("created_at", "id")
        ):
            children.setdefault((message.conversation_id, message.parent_id), []).append(message)
        batch = []
        for conversation_id, owner_id in chunk:
            trimmed = {}
            for path in _paths(children, conversation_id):
                while path and path[-1].role != Message.Role.ASSISTANT:
                    path = path[:-1]
                if path:
                    trimmed[path[-1].pk] = path  # paths cut back to the same turn are one
            # A path cut back to a turn that a longer path continues is part of that path.
            inner = {m.pk for path in trimmed.values() for m in path[:-1]}
            batch.extend(
                (conversation_id, owner_id, path)
                for leaf_id, path in trimmed.items()
                if leaf_id not in inner
            )
        yield batch


def _paths(children: dict, conversation_id: int):
    stack = [[root] for root in children.get((conversation_id, None), [])]
    while stack:
        path = stack.pop()
        below = children.get((conversation_id, path[-1].pk), [])
        if not below:
            yield path
        for child in reversed(below):
            stack.append([*path, child])
