"""Each export format's columns and their types, as the Hugging Face ``datasets`` library
describes them (``datasets.Features.to_dict()``): plain data, written beside an export file as
``<name>.features.json``.

``datasets`` infers a JSON Lines file's types chunk by chunk (10 MB by default): a column that is
null in every row of the first chunk (pairs' ``attack_id`` before the red-team pairs, rankings'
``moderation`` or ``first_placement_ms``) is typed ``null`` there, and the first value a later
chunk holds fails to load. Given these features (``load_dataset(..., features=...)``), every
chunk is cast to the same types instead, wherever the nulls fall. ``datasets`` is a test
dependency only: the app writes the description, it never imports the library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from labeling.feedback.selectors import CATEGORIES
from sampler.generation.params import GenerationParams


def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


STRING, INT, FLOAT, BOOL = _value("string"), _value("int64"), _value("float64"), _value("bool")


def _list(feature: dict | list) -> list:
    # A list column: ``[feature]`` is read as one by every ``datasets`` release since 2.x
    # (``{"_type": "List"}`` only since 4.0).
    return [feature]


MESSAGES = _list({"role": STRING, "content": STRING})
ORDERING = _list(_list(INT))  # tie groups of candidate ids, best first

# The sampling parameters a job stores (``GenerationParams``), by their annotations' names.
_PARAM_TYPES = {"float": FLOAT, "int": INT}
SAMPLING_PARAMS = {
    field.name: _PARAM_TYPES[getattr(field.type, "__name__", field.type)]
    for field in dataclasses.fields(GenerationParams)
}

CANDIDATE = {
    "candidate_id": INT,
    "message_id": INT,
    "text": STRING,
    "is_source": BOOL,
    "origin": STRING,
    "model_version": STRING,
    "sampling": {"job_id": INT, "sample_index": INT, "seed": INT, "params": SAMPLING_PARAMS},
    "moderation": {"filter": STRING, "version": STRING, "flagged": BOOL, "categories": [STRING]},
    "feedback": {"up": INT, "down": INT, "reports": dict.fromkeys(CATEGORIES, INT)},
}


def export_features(format: str, *, pseudonymize: bool = True) -> dict:
    """The columns of ``format``'s records, in the README's order, with their types; trainers
    and writers are pseudonyms (strings) or, without ``pseudonymize``, user ids."""
    person = STRING if pseudonymize else INT
    if format == "rankings":
        return {
            "schema_version": INT,
            "ranking_id": INT,
            "task_id": INT,
            "conversation_id": INT,
            "split": STRING,
            "model_version": STRING,
            "prompt": MESSAGES,
            "candidates": _list(CANDIDATE),
            "ordering": ORDERING,
            "cannot_rank": BOOL,
            "verdict": STRING,
            "order_unchanged": BOOL,
            "first_placement_ms": INT,
            "flags": _list({"candidate_id": INT, "flags": _list(STRING), "note": STRING}),
            "rationale": STRING,
            "presentation_order": _list(INT),
            "ranker": person,
            "duration_ms": INT,
            "started_at": STRING,
            "submitted_at": STRING,
            "task_agreement": FLOAT,
            "guideline_version": INT,
            "project": STRING,
            "trust_weight": FLOAT,
            "consensus": ORDERING,
        }
    if format == "pairs":
        return {
            "schema_version": INT,
            "prompt": MESSAGES,
            "chosen": MESSAGES,
            "rejected": MESSAGES,
            "task_id": INT,
            "conversation_id": INT,
            "chosen_candidate_id": INT,
            "rejected_candidate_id": INT,
            "split": STRING,
            "red_team": BOOL,
            "attack_id": INT,
            "attack_category": STRING,
            "rank_distance": FLOAT,
            "ranking_id": INT,
            "ranker": person,
            "votes": INT,
            "agreement": FLOAT,
            "guideline_version": INT,
            "project": STRING,
            "trust_weight": FLOAT,
        }
    if format == "demonstrations":
        return {
            "schema_version": INT,
            "messages": MESSAGES,
            "origins": _list(STRING),
            "conversation_id": INT,
            "leaf_message_id": INT,
            "writer": person,
            "split": STRING,
            "red_team": BOOL,
            "attack_id": INT,
            "guideline_version": INT,
        }
    raise ValueError(f"Unknown export format: {format}.")


def features_path(path: Path) -> Path:
    """Where an export file's features go: beside it, ``pairs.jsonl.gz`` ->
    ``pairs.features.json``."""
    name = path.name.removesuffix(".gz")
    name = name.removesuffix(".jsonl").removesuffix(".json")
    return path.with_name(f"{name}.features.json")
