"""Training records from the signals the app collects besides rankings and demonstrations.

- **KTO examples** (TRL's unpaired form: ``prompt``, ``completion``, ``label``) from feedback
  (thumbs up: desirable; thumbs down and reports: undesirable) and from ranking flags (a reply
  flagged harmful or untruthful: undesirable). Each keeps the version that wrote the reply.
- **Feedback pairs** for the reward model: to one prompt, a reply someone liked chosen over
  one someone disliked or reported.
- **Red-team pairs**: the export's (a trainer's correction chosen over the failed reply).

Records carry ``conversation_id`` and ``split`` where a conversation is known (by the export's
rule, so no conversation is on both sides); replies to "Try the model" prompts have no
conversation and are split by their prompt. Reads only: feedback, messages and samples through
their models, rankings and red-team pairs through the export's record builders.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from itertools import islice

from labeling.conversations.selectors import message_paths
from labeling.feedback.models import Feedback
from labeling.feedback.selectors import feedback_for_training
from ranking.exports.filters import CHUNK_SIZE, ExportFilters, chosen_split
from ranking.exports.selectors import export_records

# KTO's sources, by how a reply is marked.
FEEDBACK_SOURCES = ("thumbs_up", "thumbs_down", "reports")
FLAG_SOURCE = "flags"
# Ranking flags that make a reply undesirable (unhelpful / off-topic replies can still be fine
# replies to learn from in other rankings; these two never are).
UNDESIRABLE_FLAGS = ("harmful", "untruthful")
REWARD_SOURCES = ("rankings", "red_team", "feedback")


def _messages(value) -> list[dict]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in value or []]


def _feedback_source(row: Feedback, sources: tuple[str, ...]) -> tuple[str, bool] | None:
    """(source, desirable) of one feedback row among ``sources``, or None. A row with a thumbs
    down and a report counts once (as the thumbs down when that source is asked for)."""
    if row.rating == Feedback.Rating.UP and "thumbs_up" in sources:
        return "thumbs_up", True
    if row.rating == Feedback.Rating.DOWN and "thumbs_down" in sources:
        return "thumbs_down", False
    if row.categories and "reports" in sources and row.rating != Feedback.Rating.UP:
        return "reports", False
    return None


def _feedback_rows(filters: ExportFilters):
    return feedback_for_training(
        date_from=filters.date_from,
        date_to=filters.date_to,
        exclude_user_ids=filters.exclude_trainer_ids,
        model_version_ids=filters.model_version_ids,
        project_ids=filters.project_ids,
    )


def _path_needed(row: Feedback) -> int | None:
    """The message whose path is a feedback target's prompt: its reply's parent, when the
    reply was not sampled from a prompt of its own (None: no path needed)."""
    message = row.message
    if message is None or (message.sample_id is not None and message.sample.job.prompt_messages):
        return None
    return message.parent_id


def _target(
    row: Feedback, paths: dict[int, list]
) -> tuple[list[dict], str, int | None, str] | None:
    """(prompt, reply, conversation id, key of the prompt's node) of a feedback target;
    ``paths``: the path to each message ``_path_needed`` names."""
    if row.message_id is not None:
        message = row.message
        if message.sample_id is not None and message.sample.job.prompt_messages:
            prompt = _messages(message.sample.job.prompt_messages)
        elif message.parent_id is not None:
            prompt = _messages(
                {"role": m.role, "content": m.content} for m in paths[message.parent_id]
            )
        else:
            return None
        return prompt, message.content, message.conversation_id, f"message:{message.parent_id}"
    sample = row.sample
    return _messages(sample.job.prompt_messages), sample.text, None, f"job:{sample.job_id}"


def feedback_kto_records(
    filters: ExportFilters, *, sources: tuple[str, ...] = FEEDBACK_SOURCES
) -> Iterator[dict]:
    """One KTO record per feedback row that says something among ``sources``. Rows are read
    ``CHUNK_SIZE`` at a time, with the paths to their replies (a query each chunk, not each
    row: a run's split is checked in the request that makes it)."""
    rows = _feedback_rows(filters).iterator(chunk_size=CHUNK_SIZE)
    while chunk := list(islice(rows, CHUNK_SIZE)):
        marked_rows = [(row, _feedback_source(row, sources)) for row in chunk]
        paths = message_paths(
            message_ids={
                parent_id
                for row, marked in marked_rows
                if marked and (parent_id := _path_needed(row)) is not None
            }
        )
        yield from _feedback_kto_chunk(marked_rows, paths, filters)


def _feedback_kto_chunk(
    marked_rows: list[tuple[Feedback, tuple[str, bool] | None]],
    paths: dict[int, list],
    filters: ExportFilters,
) -> Iterator[dict]:
    """The KTO records of a chunk of feedback rows, each with its ``_feedback_source``."""
    for row, marked in marked_rows:
        target = _target(row, paths) if marked else None
        if target is None:
            continue
        prompt, reply, conversation_id, node = target
        if not prompt or prompt[-1]["role"] != "user":
            continue
        record = {
            "prompt": prompt,
            "completion": [{"role": "assistant", "content": reply}],
            "label": marked[1],
            "source": marked[0],
            "model_version": row.model_version.name if row.model_version else None,
            "conversation_id": conversation_id,
            "feedback_id": row.pk,
            "node": node,
        }
        if conversation_id is not None:
            split = chosen_split(conversation_id, filters)
            if split is None:
                continue
            record["split"] = split
        yield record


def flag_kto_records(filters: ExportFilters) -> Iterator[dict]:
    """An undesirable KTO record per reply a ranking flagged harmful or untruthful."""
    unflagged = ExportFilters.from_dict({**filters.as_dict(), "exclude_flags": []})
    for ranking in export_records(format="rankings", filters=unflagged):
        texts = {c["candidate_id"]: c for c in ranking["candidates"]}
        for entry in ranking["flags"]:
            if not set(entry["flags"]) & set(UNDESIRABLE_FLAGS):
                continue
            candidate = texts.get(entry["candidate_id"])
            if candidate is None:
                continue
            yield {
                "prompt": _messages(ranking["prompt"]),
                "completion": [{"role": "assistant", "content": candidate["text"]}],
                "label": False,
                "source": FLAG_SOURCE,
                "model_version": candidate["model_version"],
                "conversation_id": ranking["conversation_id"],
                "split": ranking["split"],
                "ranking_id": ranking["ranking_id"],
            }


def kto_records(filters: ExportFilters, *, sources: tuple[str, ...]) -> Iterator[dict]:
    feedback = tuple(source for source in sources if source in FEEDBACK_SOURCES)
    if feedback:
        yield from feedback_kto_records(filters, sources=feedback)
    if FLAG_SOURCE in sources:
        yield from flag_kto_records(filters)


def _prompt_hash(prompt: list[dict]) -> str:
    return hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()


def feedback_pair_records(filters: ExportFilters) -> Iterator[dict]:
    """To one prompt, every reply someone liked chosen over every reply someone disliked or
    reported (each distinct reply text once per side; a reply on both sides is left out). Both
    replies of a pair come from the same split: a held-out conversation's reply is never
    paired into training because another conversation asked the same."""
    by_prompt: dict[tuple, dict] = defaultdict(lambda: {"good": {}, "bad": {}})
    for record in feedback_kto_records(filters):
        key = (_prompt_hash(record["prompt"]), record.get("split"))
        entry = by_prompt[key]
        entry.setdefault("record", record)
        side = "good" if record["label"] else "bad"
        entry[side].setdefault(record["completion"][0]["content"], record)
    for entry in by_prompt.values():
        contested = set(entry["good"]) & set(entry["bad"])
        for chosen, good in entry["good"].items():
            for rejected in entry["bad"]:
                if chosen in contested or rejected in contested:
                    continue
                yield {
                    "prompt": good["prompt"],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                    "conversation_id": good["conversation_id"],
                    **({"split": good["split"]} if "split" in good else {}),
                    "source": "feedback",
                }


def reward_records(filters: ExportFilters, *, sources: tuple[str, ...]) -> Iterator[dict]:
    """Reward-model records from the database: rankings, red-team pairs, feedback pairs."""
    if "rankings" in sources:
        yield from export_records(format="rankings", filters=filters)
    if "red_team" in sources:
        yield from export_records(format="pairs", filters=replace(filters, red_team="only"))
    if "feedback" in sources:
        yield from feedback_pair_records(filters)
