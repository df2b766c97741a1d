from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.db.models import BooleanField, ExpressionWrapper, F, Q

from config.querysets import filter_given, values_in_chunks
from labeling.feedback.selectors import feedback_summaries
from ranking.exports.filters import CHUNK_SIZE, ExportFilters, chosen_split, day_bounds
from ranking.exports.models import SKIPPED_RANKINGS_WITHOUT_PROMPT
from ranking.quality.metrics import task_agreement
from ranking.quality.selectors import trust_exact
from ranking.quality.trust import PRIOR_RIGHT, PRIOR_WRONG
from ranking.rank.models import Candidate, Ranking, RankingTask
from ranking.rank.selectors import source_finished
from sampler.moderation.selectors import moderation_shown_of_texts

logger = logging.getLogger(__name__)


@dataclass
class TaskBundle:
    task: dict
    candidates: list[dict]
    rankings: list[dict] = field(default_factory=list)


def rankings_query(filters: ExportFilters):
    rankings = Ranking.objects.all()
    if filters.project_ids:
        rankings = rankings.filter(project_id__in=filters.project_ids)
    for lookup, value in day_bounds(filters).items():
        rankings = rankings.filter(**{f"submitted_at__{lookup}": value})
    if filters.exclude_trainer_ids:
        rankings = rankings.exclude(ranker_id__in=filters.exclude_trainer_ids)
    if filters.guideline_versions:
        rankings = rankings.filter(guideline_version__number__in=filters.guideline_versions)
    if filters.red_team == "only":
        rankings = rankings.none()  # rankings are never red-team data
    return rankings


def tasks_query(filters: ExportFilters):
    # Gold copies measure trainers; their rankings are not new data. A task's rankings are
    # data while its conversation is finished, as a demonstration is: one discarded (or
    # reopened, until it is finished again) is left out (``source_finished``).
    tasks = RankingTask.objects.filter(
        source_finished(), rankings_count__gt=0, gold_ordering__isnull=True
    )
    return filter_given(
        tasks,
        project_id__in=filters.project_ids,
        model_version_id__in=filters.model_version_ids,
    )


# What a pairs record needs of a candidate; the rankings format adds its provenance.
_CANDIDATE_TEXT = ("id", "task_id", "position", "is_source", "message_id", "message__content")
_CANDIDATE_PROVENANCE = (
    "message__origin",
    "message__model_version__name",
    "message__sample__index",
    "message__sample__job_id",
    "message__sample__job__params",
    "message__sample__job__seed",
    "message__sample_id",
    "is_sample_text",
)
# Whether a candidate's text is its sample's (an edited suggestion's is not), compared in the
# database: the sample's text is not read.
_IS_SAMPLE_TEXT = ExpressionWrapper(
    Q(message__content=F("message__sample__text")), output_field=BooleanField()
)
# What pairs read of a ranking; the rankings format adds the rest of the record.
_RANKING_ORDER = (
    "id",
    "task_id",
    "ranker_id",
    "ordering",
    "cannot_rank",
    "flags",
    "guideline_version__number",
)
_RANKING_RECORD = (
    "rationale",
    "presentation_order",
    "started_at",
    "submitted_at",
    "duration_ms",
    "verdict",
    "order_unchanged",
    "first_placement_ms",
)


def task_bundles(
    filters: ExportFilters, *, chunk_size: int = CHUNK_SIZE, provenance: bool = True
) -> Iterator[TaskBundle]:
    """Tasks with their candidates and the rankings that pass the filters, a chunk at a time.

    ``provenance``: each candidate also carries its origin, sampling, content-filter verdict
    and feedback, and each ranking its rationale, presentation and times (the rankings
    format); without it, candidates' texts and rankings' orders (all that pairs read).
    Candidates and rankings are read by the chunk's id range (an index range scan, not a
    list of ids), and rows of tasks outside the chunk's filter are ignored.
    """
    tasks = tasks_query(filters)
    candidate_fields = _CANDIDATE_TEXT + (_CANDIDATE_PROVENANCE if provenance else ())
    ranking_fields = _RANKING_ORDER + (_RANKING_RECORD if provenance else ())
    for chunk in values_in_chunks(
        tasks,
        "project__slug",
        "model_version__name",
        "prefix_message_id",
        "source_message__conversation_id",
        "generation_job__prompt_messages",
        chunk_size=chunk_size,
    ):
        first_pk, last_pk = chunk[0]["pk"], chunk[-1]["pk"]
        in_chunk = {"task_id__gte": first_pk, "task_id__lte": last_pk}
        candidates = defaultdict(list)
        for candidate in (
            Candidate.objects.filter(**in_chunk)
            .annotate(**({"is_sample_text": _IS_SAMPLE_TEXT} if provenance else {}))
            .order_by("task_id", "position")
            .values(*candidate_fields)
        ):
            candidates[candidate["task_id"]].append(candidate)
        if provenance:
            chunk_ids = {task["pk"] for task in chunk}
            _add_moderation_and_feedback(
                [c for task_id in chunk_ids for c in candidates.get(task_id, ())]
            )
        rankings = defaultdict(list)
        for ranking in (
            rankings_query(filters)
            .filter(**in_chunk)
            .order_by("task_id", "pk")
            .values(*ranking_fields)
        ):
            rankings[ranking["task_id"]].append(ranking)
        for task in chunk:
            if rankings[task["pk"]]:
                yield TaskBundle(task, candidates[task["pk"]], rankings[task["pk"]])


def _add_moderation_and_feedback(candidates: list[dict]) -> None:
    """The content filter's verdict on each candidate's text as it is shown (its sample's when
    it is the sample's text; else its own: an edited suggestion's, an imported reply's; the
    configured filter's, else the newest: ``moderation_shown_of_texts``), and the
    thumbs and reports on the candidate (its message or the sample it came from): one query
    each."""
    verdicts = moderation_shown_of_texts(
        texts=[
            (c["message__content"], c["message__sample_id"] if c["is_sample_text"] else None)
            for c in candidates
        ]
    )
    feedback = feedback_summaries(
        messages=[(c["message_id"], c["message__sample_id"]) for c in candidates]
    )
    for candidate, verdict in zip(candidates, verdicts, strict=True):
        candidate["moderation"] = verdict and {
            "filter": verdict.filter_name,
            "version": verdict.filter_version,
            "flagged": verdict.flagged,
            "categories": verdict.categories,
        }
        candidate["feedback"] = feedback[candidate["message_id"]]


# The trust of a ranker with no strict pair to judge them by: the prior's mean.
DEFAULT_TRUST = PRIOR_RIGHT / (PRIOR_RIGHT + PRIOR_WRONG)


def export_trust(filters: ExportFilters) -> dict[int, float]:
    """Ranker id -> trust, estimated from every ranking of the export's projects (all of them
    when it names none), gold included, whatever the other filters keep: the stored estimate
    when it counts exactly those rankings (export jobs bring it up to date first), else
    estimated here."""
    return {
        trainer: estimate.trust
        for trainer, estimate in trust_exact(project_ids=filters.project_ids).items()
    }


def flagged_candidates(ranking: dict, names: tuple[str, ...]) -> set[int]:
    """Candidates this ranking flagged with any of ``names``."""
    return {
        int(candidate)
        for candidate, entry in (ranking["flags"] or {}).items()
        if set(entry.get("flags", [])) & set(names)
    }


def bundle_context(
    bundle: TaskBundle,
    filters: ExportFilters,
    *,
    with_agreement: bool = False,
    skipped: Counter | None = None,
) -> dict | None:
    """What every record of a task shares; None when the task is filtered out, or skipped.

    ``with_agreement``: the records carry the task's agreement (rankings), so ``min_agreement``
    is the task's whatever ``pair_mode`` says (it only chooses how pairs are built).
    A task the filters keep whose prompt is gone (its generation job was deleted: the task
    keeps its candidates, not the turns they answer) is skipped, never written with an empty
    prompt: its rankings are counted in ``skipped`` and logged.
    """
    conversation_id = bundle.task["source_message__conversation_id"]
    split = chosen_split(conversation_id, filters)
    if split is None:
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
    prompt = bundle.task["generation_job__prompt_messages"]
    if not prompt:
        logger.warning(
            "Export skipped task %s (%d rankings): its generation job is gone, and with it the "
            "prompt its candidates answer.",
            bundle.task["pk"],
            len(bundle.rankings),
        )
        if skipped is not None:
            skipped[SKIPPED_RANKINGS_WITHOUT_PROMPT] += len(bundle.rankings)
        return None
    excluded = set()
    for ranking in bundle.rankings:
        excluded |= flagged_candidates(ranking, filters.exclude_flags)
    return {
        "split": split,
        "conversation_id": conversation_id,
        "agreement": agreement,
        "excluded_candidates": excluded,
        "prompt": prompt,
        "project": bundle.task["project__slug"],
        "texts": {c["id"]: c["message__content"] for c in bundle.candidates},
    }
