"""Dataset exports: records built from the database in bounded chunks, written as JSONL.

Three formats, each record carrying ``schema_version`` (documented in the README):
- ``rankings``: one record per ranking by one trainer, with candidates and their provenance;
- ``pairs``: preference pairs in TRL's conversational form (``prompt`` / ``chosen`` /
  ``rejected``), per ranker or aggregated over rankers;
- ``demonstrations``: ``{"messages": [...]}``, one per finished conversation path.

Memory stays flat: tasks (or conversations) are read in keyset-paginated chunks and each
record is written as soon as it is built.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, time, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from labeling.feedback_selectors import feedback_summaries
from labeling.guideline_selectors import guideline_version_numbers
from labeling.redteam_selectors import (
    correction_attack_ids,
    red_team_conversation_ids,
    red_team_pair_chunks,
)
from labeling.selectors import demonstration_chunks
from ranking.metrics import implied_pairs, task_agreement
from ranking.models import Candidate, DatasetExport, Ranking, RankingTask
from sampler.moderation import moderation_latest_by_sample

SCHEMA_VERSION = 1
FORMATS = tuple(DatasetExport.Format.values)
PAIR_MODES = ("per_ranker", "aggregated")
SPLITS = ("all", "train", "test")
# Red-team data (corrected attacks): kept with the rest, left out, or exported alone.
RED_TEAM_MODES = ("include", "exclude", "only")
FLAG_NAMES = ("harmful", "untruthful", "unhelpful", "off_topic", "other")
CHUNK_SIZE = 500


@dataclass(frozen=True)
class ExportFilters:
    """What to export. Every field has a default, so ``ExportFilters()`` exports everything."""

    date_from: date | None = None
    date_to: date | None = None
    model_version_ids: tuple[int, ...] = ()
    # Rankings / per-ranker pairs: the task's mean pairwise agreement between rankers.
    # Aggregated pairs: the share of rankers that agree with the majority on that pair.
    min_agreement: float | None = None
    exclude_flags: tuple[str, ...] = ()
    exclude_trainer_ids: tuple[int, ...] = ()
    pair_mode: str = "per_ranker"
    split: str = "all"
    # Conversations hashed into the test split; by conversation, so no prompt is on both sides.
    test_fraction: float = 0.1
    split_seed: int = 0
    pseudonymize: bool = True
    red_team: str = "include"
    # Guideline version numbers; empty: any (rows made before versions existed included).
    guideline_versions: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        errors = {}
        if self.red_team not in RED_TEAM_MODES:
            errors["red_team"] = f"red_team must be one of {', '.join(RED_TEAM_MODES)}."
        if any(number < 1 for number in self.guideline_versions):
            errors["guideline_versions"] = "Guideline versions are numbered from 1."
        if self.pair_mode not in PAIR_MODES:
            errors["pair_mode"] = f"pair_mode must be one of {', '.join(PAIR_MODES)}."
        if self.split not in SPLITS:
            errors["split"] = f"split must be one of {', '.join(SPLITS)}."
        if not 0.0 <= self.test_fraction < 1.0:
            errors["test_fraction"] = "test_fraction must be at least 0 and below 1."
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            errors["min_agreement"] = "min_agreement must be between 0 and 1."
        unknown = set(self.exclude_flags) - set(FLAG_NAMES)
        if unknown:
            errors["exclude_flags"] = f"Unknown flags: {', '.join(sorted(unknown))}."
        if self.date_from and self.date_to and self.date_from > self.date_to:
            errors["date_to"] = "The end date is before the start date."
        if errors:
            raise ValidationError(errors)

    def as_dict(self) -> dict:
        values = asdict(self)
        for key in ("date_from", "date_to"):
            values[key] = values[key].isoformat() if values[key] else None
        for key in (
            "model_version_ids",
            "exclude_flags",
            "exclude_trainer_ids",
            "guideline_versions",
        ):
            values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ExportFilters:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValidationError({"filters": f"Unknown filters: {', '.join(sorted(unknown))}."})
        cleaned = dict(values)
        try:
            for key in ("date_from", "date_to"):
                if cleaned.get(key):
                    cleaned[key] = date.fromisoformat(str(cleaned[key]))
            for key in ("model_version_ids", "exclude_trainer_ids", "guideline_versions"):
                cleaned[key] = tuple(int(v) for v in cleaned.get(key) or ())
            cleaned["exclude_flags"] = tuple(str(v) for v in cleaned.get("exclude_flags") or ())
            for key in ("min_agreement", "test_fraction"):
                if cleaned.get(key) is not None:
                    cleaned[key] = float(cleaned[key])
        except (TypeError, ValueError) as error:
            raise ValidationError({"filters": f"Malformed filter value ({error})."}) from error
        return cls(**cleaned)


def split_of(conversation_id: int, *, seed: int, test_fraction: float) -> str:
    """Deterministic: the same conversation lands on the same side in every export."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def pseudonym(user_id: int | None, *, enabled: bool) -> str | int | None:
    """A stable id per user and deployment that does not reveal who ranked."""
    if user_id is None or not enabled:
        return user_id
    return _keyed_hash(user_id, settings.SECRET_KEY)


@functools.lru_cache(maxsize=65536)
def _keyed_hash(user_id: int, key: str) -> str:
    # Cached: an export names the same few hundred trainers on millions of rows.
    mac = hmac.new(key.encode(), f"ranker:{user_id}".encode(), hashlib.sha256)
    return "r-" + mac.hexdigest()[:16]


def _day_bounds(filters: ExportFilters) -> dict:
    bounds = {}
    zone = timezone.get_current_timezone()
    if filters.date_from:
        bounds["gte"] = datetime.combine(filters.date_from, time.min, tzinfo=zone)
    if filters.date_to:
        bounds["lt"] = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=zone)
    return bounds


# ---- reading rankings in chunks ---------------------------------------------------------------


@dataclass
class TaskBundle:
    task: dict
    candidates: list[dict]
    rankings: list[dict] = field(default_factory=list)


def _rankings_query(filters: ExportFilters):
    rankings = Ranking.objects.all()
    for lookup, value in _day_bounds(filters).items():
        rankings = rankings.filter(**{f"submitted_at__{lookup}": value})
    if filters.exclude_trainer_ids:
        rankings = rankings.exclude(ranker_id__in=filters.exclude_trainer_ids)
    if filters.guideline_versions:
        rankings = rankings.filter(guideline_version__number__in=filters.guideline_versions)
    if filters.red_team == "only":
        rankings = rankings.none()  # rankings are never red-team data
    return rankings


def _tasks_query(filters: ExportFilters):
    tasks = RankingTask.objects.filter(rankings_count__gt=0)
    if filters.model_version_ids:
        tasks = tasks.filter(model_version_id__in=filters.model_version_ids)
    return tasks


def task_bundles(filters: ExportFilters, *, chunk_size: int = CHUNK_SIZE) -> Iterator[TaskBundle]:
    """Tasks with their candidates and the rankings that pass the filters, a chunk at a time."""
    tasks = _tasks_query(filters).order_by("pk")
    last_pk = 0
    while True:
        chunk = list(
            tasks.filter(pk__gt=last_pk).values(
                "pk",
                "model_version__name",
                "prefix_message_id",
                "source_message__conversation_id",
                "generation_job__prompt_messages",
            )[:chunk_size]
        )
        if not chunk:
            return
        last_pk = chunk[-1]["pk"]
        ids = [task["pk"] for task in chunk]
        candidates = defaultdict(list)
        for candidate in (
            Candidate.objects.filter(task_id__in=ids)
            .order_by("task_id", "position")
            .values(
                "id",
                "task_id",
                "position",
                "is_source",
                "message_id",
                "message__content",
                "message__origin",
                "message__model_version__name",
                "message__sample__index",
                "message__sample__job_id",
                "message__sample__job__params",
                "message__sample__job__seed",
                "message__sample_id",
            )
        ):
            candidates[candidate["task_id"]].append(candidate)
        _add_moderation_and_feedback([c for group in candidates.values() for c in group])
        rankings = defaultdict(list)
        for ranking in (
            _rankings_query(filters)
            .filter(task_id__in=ids)
            .order_by("task_id", "pk")
            .values(
                "id",
                "task_id",
                "ranker_id",
                "ordering",
                "cannot_rank",
                "flags",
                "rationale",
                "presentation_order",
                "started_at",
                "submitted_at",
                "duration_ms",
                "guideline_version__number",
            )
        ):
            rankings[ranking["task_id"]].append(ranking)
        for task in chunk:
            if rankings[task["pk"]]:
                yield TaskBundle(task, candidates[task["pk"]], rankings[task["pk"]])


def _add_moderation_and_feedback(candidates: list[dict]) -> None:
    """The content filter's newest verdict on each candidate's sample, and the thumbs and
    reports on the candidate (its message or the sample it came from): one query each."""
    sample_ids = [c["message__sample_id"] for c in candidates if c["message__sample_id"]]
    verdicts = moderation_latest_by_sample(sample_ids=sample_ids)
    feedback = feedback_summaries(
        messages=[(c["message_id"], c["message__sample_id"]) for c in candidates]
    )
    for candidate in candidates:
        verdict = verdicts.get(candidate["message__sample_id"])
        candidate["moderation"] = verdict and {
            "filter": verdict.filter_name,
            "version": verdict.filter_version,
            "flagged": verdict.flagged,
            "categories": verdict.categories,
        }
        candidate["feedback"] = feedback[candidate["message_id"]]


def _flagged(ranking: dict, names: tuple[str, ...]) -> set[int]:
    """Candidates this ranking flagged with any of ``names``."""
    return {
        int(candidate)
        for candidate, entry in (ranking["flags"] or {}).items()
        if set(entry.get("flags", [])) & set(names)
    }


def _bundle_context(
    bundle: TaskBundle, filters: ExportFilters, *, with_agreement: bool = False
) -> dict | None:
    """What every record of a task shares; None when the task is filtered out.

    ``with_agreement``: the records carry the task's agreement (rankings), so ``min_agreement``
    is the task's whatever ``pair_mode`` says (it only chooses how pairs are built).
    """
    conversation_id = bundle.task["source_message__conversation_id"]
    split = split_of(conversation_id, seed=filters.split_seed, test_fraction=filters.test_fraction)
    if filters.split != "all" and split != filters.split:
        return None
    agreement = None
    by_task_agreement = filters.min_agreement is not None and (
        with_agreement or filters.pair_mode == "per_ranker"
    )
    if with_agreement or by_task_agreement:
        orderings = [r["ordering"] for r in bundle.rankings if not r["cannot_rank"]]
        agreement = task_agreement(orderings).pairwise
        if by_task_agreement and (agreement is None or agreement < filters.min_agreement):
            return None
    excluded = set()
    for ranking in bundle.rankings:
        excluded |= _flagged(ranking, filters.exclude_flags)
    return {
        "split": split,
        "conversation_id": conversation_id,
        "agreement": agreement,
        "excluded_candidates": excluded,
        "prompt": bundle.task["generation_job__prompt_messages"] or [],
        "texts": {c["id"]: c["message__content"] for c in bundle.candidates},
    }


# ---- formats ----------------------------------------------------------------------------------


def _candidate_record(candidate: dict) -> dict:
    return {
        "candidate_id": candidate["id"],
        "message_id": candidate["message_id"],
        "text": candidate["message__content"],
        "is_source": candidate["is_source"],
        "origin": candidate["message__origin"],
        "model_version": candidate["message__model_version__name"],
        "sampling": {
            "job_id": candidate["message__sample__job_id"],
            "sample_index": candidate["message__sample__index"],
            "seed": candidate["message__sample__job__seed"],
            "params": candidate["message__sample__job__params"],
        },
        "moderation": candidate["moderation"],
        "feedback": candidate["feedback"],
    }


def ranking_records(filters: ExportFilters) -> Iterator[dict]:
    for bundle in task_bundles(filters):
        context = _bundle_context(bundle, filters, with_agreement=True)
        if context is None:
            continue
        candidates = [_candidate_record(c) for c in bundle.candidates]
        for ranking in bundle.rankings:
            if _flagged(ranking, filters.exclude_flags):
                continue
            yield {
                "schema_version": SCHEMA_VERSION,
                "ranking_id": ranking["id"],
                "task_id": bundle.task["pk"],
                "conversation_id": context["conversation_id"],
                "split": context["split"],
                "model_version": bundle.task["model_version__name"],
                "prompt": context["prompt"],
                "candidates": candidates,
                "ordering": ranking["ordering"],
                "cannot_rank": ranking["cannot_rank"],
                # A list, not a dict keyed by id: every record then has the same schema.
                "flags": [
                    {"candidate_id": int(candidate), "flags": entry["flags"], "note": entry["note"]}
                    for candidate, entry in sorted((ranking["flags"] or {}).items())
                ],
                "rationale": ranking["rationale"],
                "presentation_order": ranking["presentation_order"],
                "ranker": pseudonym(ranking["ranker_id"], enabled=filters.pseudonymize),
                "duration_ms": ranking["duration_ms"],
                "started_at": ranking["started_at"].isoformat(),
                "submitted_at": ranking["submitted_at"].isoformat(),
                "task_agreement": context["agreement"],
                "guideline_version": ranking["guideline_version__number"],
            }


def _pair_record(context: dict, task_id: int, winner: int, loser: int, **extra) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "prompt": context["prompt"],
        "chosen": [{"role": "assistant", "content": context["texts"][winner]}],
        "rejected": [{"role": "assistant", "content": context["texts"][loser]}],
        "task_id": task_id,
        "conversation_id": context["conversation_id"],
        "chosen_candidate_id": winner,
        "rejected_candidate_id": loser,
        "split": context["split"],
        "red_team": False,
        "attack_id": None,
        "attack_category": None,
        **extra,
    }


def pair_records(filters: ExportFilters) -> Iterator[dict]:
    for bundle in task_bundles(filters) if filters.red_team != "only" else ():
        context = _bundle_context(bundle, filters)
        if context is None:
            continue
        excluded = context["excluded_candidates"]
        task_id = bundle.task["pk"]
        if filters.pair_mode == "per_ranker":
            for ranking in bundle.rankings:
                ordering = ranking["ordering"]
                ranker = pseudonym(ranking["ranker_id"], enabled=filters.pseudonymize)
                for rank, group in enumerate(ordering):
                    for worse_rank in range(rank + 1, len(ordering)):
                        for winner in group:
                            for loser in ordering[worse_rank]:
                                if winner in excluded or loser in excluded:
                                    continue
                                yield _pair_record(
                                    context,
                                    task_id,
                                    winner,
                                    loser,
                                    margin=float(worse_rank - rank),
                                    ranking_id=ranking["id"],
                                    ranker=ranker,
                                    votes=1,
                                    agreement=1.0,
                                    guideline_version=ranking["guideline_version__number"],
                                )
        else:
            yield from _aggregated_pairs(bundle, context, filters)
    if filters.red_team != "exclude":
        yield from red_team_pair_records(filters)


def red_team_pair_records(filters: ExportFilters) -> Iterator[dict]:
    """One pair per corrected attack: the trainer's correction chosen over the failed reply.

    One trainer's judgement, like a demonstration: ``votes`` 1, and neither ``min_agreement``
    nor ``exclude_flags`` applies (``red_team="exclude"`` leaves these pairs out).
    """
    for chunk in red_team_pair_chunks(
        finished_bounds=_day_bounds(filters),
        exclude_owner_ids=filters.exclude_trainer_ids,
        model_version_ids=filters.model_version_ids,
        guideline_versions=filters.guideline_versions,
        chunk_size=CHUNK_SIZE,
    ):
        for attack in chunk:
            conversation_id = attack["conversation_id"]
            split = split_of(
                conversation_id, seed=filters.split_seed, test_fraction=filters.test_fraction
            )
            if filters.split != "all" and split != filters.split:
                continue
            yield {
                "schema_version": SCHEMA_VERSION,
                "prompt": attack["prompt_messages"],
                "chosen": [{"role": "assistant", "content": attack["correction__content"]}],
                "rejected": [{"role": "assistant", "content": attack["message__content"]}],
                "task_id": None,
                "conversation_id": conversation_id,
                "chosen_candidate_id": None,
                "rejected_candidate_id": None,
                "split": split,
                "red_team": True,
                "attack_id": attack["pk"],
                "attack_category": attack["category"],
                "margin": 1.0,
                "ranking_id": None,
                "ranker": pseudonym(attack["conversation__owner_id"], enabled=filters.pseudonymize),
                "votes": 1,
                "agreement": 1.0,
                "guideline_version": attack["correction__guideline_version__number"],
            }


def _aggregated_pairs(bundle: TaskBundle, context: dict, filters: ExportFilters) -> Iterator[dict]:
    """The majority preference on each candidate pair, over the task's rankers."""
    votes: Counter = Counter()
    distances: defaultdict = defaultdict(list)
    # Rankers may have worked under different versions: the pair carries the newest.
    numbers = [r["guideline_version__number"] for r in bundle.rankings]
    guideline_version = max((n for n in numbers if n is not None), default=None)
    for ranking in bundle.rankings:
        ranks = {c: r for r, group in enumerate(ranking["ordering"]) for c in group}
        for winner, loser in implied_pairs(ranking["ordering"]):
            votes[winner, loser] += 1
            distances[winner, loser].append(ranks[loser] - ranks[winner])
    seen = set()
    for first, second in sorted(votes):
        key = frozenset((first, second))
        if key in seen:
            continue
        seen.add(key)
        forward, backward = votes[first, second], votes[second, first]
        if forward == backward:
            continue  # no majority
        winner, loser = (first, second) if forward > backward else (second, first)
        if winner in context["excluded_candidates"] or loser in context["excluded_candidates"]:
            continue
        agreement = max(forward, backward) / (forward + backward)
        if filters.min_agreement is not None and agreement < filters.min_agreement:
            continue
        margins = distances[winner, loser]
        yield _pair_record(
            context,
            bundle.task["pk"],
            winner,
            loser,
            margin=sum(margins) / len(margins),
            ranking_id=None,
            ranker=None,
            votes=forward + backward,
            agreement=agreement,
            guideline_version=guideline_version,
        )


def demonstration_records(filters: ExportFilters) -> Iterator[dict]:
    guideline_numbers = guideline_version_numbers()
    for chunk in demonstration_chunks(
        finished_bounds=_day_bounds(filters),
        exclude_owner_ids=filters.exclude_trainer_ids,
        chunk_size=CHUNK_SIZE,
        red_team=filters.red_team,
    ):
        red_team = red_team_conversation_ids(conversation_ids=[c for c, _, _ in chunk])
        corrections = correction_attack_ids(
            message_ids=[m.pk for c, _, path in chunk if c in red_team for m in path]
        )
        for conversation_id, owner_id, path in chunk:
            split = split_of(
                conversation_id, seed=filters.split_seed, test_fraction=filters.test_fraction
            )
            if filters.split != "all" and split != filters.split:
                continue
            # The version the path's last reply was written under (None before versions).
            guideline_version = guideline_numbers.get(path[-1].guideline_version_id)
            if filters.guideline_versions and guideline_version not in filters.guideline_versions:
                continue
            attack_ids = [corrections[m.pk] for m in path if m.pk in corrections]
            yield {
                "schema_version": SCHEMA_VERSION,
                "messages": [{"role": m.role, "content": m.content} for m in path],
                "origins": [m.origin for m in path],
                "conversation_id": conversation_id,
                "leaf_message_id": path[-1].pk,
                "writer": pseudonym(owner_id, enabled=filters.pseudonymize),
                "split": split,
                "red_team": conversation_id in red_team,
                # The last successful attack this path corrects, if any.
                "attack_id": attack_ids[-1] if attack_ids else None,
                "guideline_version": guideline_version,
            }


RECORD_BUILDERS: dict[str, Callable[[ExportFilters], Iterator[dict]]] = {
    DatasetExport.Format.RANKINGS: ranking_records,
    DatasetExport.Format.PAIRS: pair_records,
    DatasetExport.Format.DEMONSTRATIONS: demonstration_records,
}


def records(format: str, filters: ExportFilters) -> Iterator[dict]:
    if format not in RECORD_BUILDERS:
        raise ValidationError({"format": f"format must be one of {', '.join(FORMATS)}."})
    return RECORD_BUILDERS[format](filters)


def source_count(format: str, filters: ExportFilters) -> int:
    """What the preview shows: rankings (for rankings and pairs) or finished conversations."""
    if format == DatasetExport.Format.DEMONSTRATIONS:
        from labeling.selectors import demonstration_conversations

        return demonstration_conversations(
            finished_bounds=_day_bounds(filters),
            exclude_owner_ids=filters.exclude_trainer_ids,
            red_team=filters.red_team,
        ).count()
    return _rankings_query(filters).filter(task__in=_tasks_query(filters)).count()


def jsonl_lines(rows: Iterator[dict]) -> Iterator[bytes]:
    # orjson: UTF-8 out, compact, several times faster than json.dumps on these records.
    for row in rows:
        yield orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE)


@dataclass
class WrittenFile:
    rows: int
    size_bytes: int
    sha256: str


class _HashingWriter:
    """Counts and hashes the bytes that reach the file (after compression)."""

    def __init__(self, raw) -> None:
        self.raw, self.digest, self.size = raw, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def write_jsonl(
    rows: Iterator[dict],
    path: Path,
    *,
    compress: bool | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> WrittenFile:
    """Write ``rows`` as JSONL, buffered, hashing as it goes; gzip when ``compress`` (by default
    when the name ends in .gz)."""
    compress = path.suffix == ".gz" if compress is None else compress
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as raw:
        hashing = _HashingWriter(raw)
        # mtime=0: the same rows give a byte-identical .gz, so the same sha256.
        sink = gzip.GzipFile(fileobj=hashing, mode="wb", mtime=0) if compress else hashing
        buffer = []
        for line in jsonl_lines(rows):
            buffer.append(line)
            count += 1
            if len(buffer) >= 1000:
                sink.write(b"".join(buffer))
                buffer.clear()
                if on_progress:
                    on_progress(count)
        sink.write(b"".join(buffer))
        if sink is not hashing:
            sink.close()
    return WrittenFile(rows=count, size_bytes=hashing.size, sha256=hashing.digest.hexdigest())
