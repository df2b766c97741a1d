from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from labeling.feedback.selectors import feedback_summaries
from ranking.exports.filters import CHUNK_SIZE, ExportFilters, day_bounds, split_of
from ranking.quality.metrics import task_agreement
from ranking.quality.selectors import trainer_trust
from ranking.quality.trust import PRIOR_RIGHT, PRIOR_WRONG
from ranking.rank.models import Candidate, Ranking, RankingTask
from sampler.moderation.selectors import moderation_latest_by_sample


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
    # Gold copies measure trainers; their rankings are not new data.
    tasks = RankingTask.objects.filter(rankings_count__gt=0, gold_ordering__isnull=True)
    if filters.project_ids:
        tasks = tasks.filter(project_id__in=filters.project_ids)
    if filters.model_version_ids:
        tasks = tasks.filter(model_version_id__in=filters.model_version_ids)
    return tasks


def task_bundles(filters: ExportFilters, *, chunk_size: int = CHUNK_SIZE) -> Iterator[TaskBundle]:
    """Tasks with their candidates and the rankings that pass the filters, a chunk at a time."""
    tasks = tasks_query(filters).order_by("pk")
    last_pk = 0
    while True:
        chunk = list(
            tasks.filter(pk__gt=last_pk).values(
                "pk",
                "project__slug",
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
            rankings_query(filters)
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


# The trust of a ranker with no strict pair to judge them by: the prior's mean.
DEFAULT_TRUST = PRIOR_RIGHT / (PRIOR_RIGHT + PRIOR_WRONG)


def export_trust(filters: ExportFilters) -> dict[int, float]:
    """Ranker id -> trust, estimated from every ranking of the export's projects (all of them
    when it names none), gold included, whatever the other filters keep."""
    return {
        trainer: estimate.trust
        for trainer, estimate in trainer_trust(project_ids=filters.project_ids).items()
    }


def flagged_candidates(ranking: dict, names: tuple[str, ...]) -> set[int]:
    """Candidates this ranking flagged with any of ``names``."""
    return {
        int(candidate)
        for candidate, entry in (ranking["flags"] or {}).items()
        if set(entry.get("flags", [])) & set(names)
    }


def bundle_context(
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
        excluded |= flagged_candidates(ranking, filters.exclude_flags)
    return {
        "split": split,
        "conversation_id": conversation_id,
        "agreement": agreement,
        "excluded_candidates": excluded,
        "prompt": bundle.task["generation_job__prompt_messages"] or [],
        "project": bundle.task["project__slug"],
        "texts": {c["id"]: c["message__content"] for c in bundle.candidates},
    }
