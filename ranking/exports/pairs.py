from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator

from labeling.redteam.selectors import (
    red_team_pair_chunks,
)
from ranking.exports.filters import (
    CHUNK_SIZE,
    SCHEMA_VERSION,
    ExportFilters,
    chosen_split,
    day_bounds,
    pseudonym,
)
from ranking.exports.models import SKIPPED_ATTACKS_WITHOUT_PROMPT
from ranking.exports.reading import (
    DEFAULT_TRUST,
    TaskBundle,
    bundle_context,
    export_trust,
    task_bundles,
)
from ranking.quality.metrics import implied_pairs


def _pair_record(
    context: dict,
    task_id: int,
    winner: int,
    loser: int,
    *,
    rank_distance: float,
    ranking_id: int | None,
    ranker: str | int | None,
    votes: int,
    agreement: float,
    guideline_version: int | None,
    trust_weight: float | None = None,
) -> dict:
    # The README's order (and the features'), which red-team pairs follow too.
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
        "rank_distance": rank_distance,
        "ranking_id": ranking_id,
        "ranker": ranker,
        "votes": votes,
        "agreement": agreement,
        "guideline_version": guideline_version,
        "project": context.get("project"),
        "trust_weight": trust_weight,
    }


def pair_records(filters: ExportFilters, *, skipped: Counter | None = None) -> Iterator[dict]:
    """Preference pairs; ``skipped`` counts what is left out for lack of a prompt."""
    trust = export_trust(filters) if filters.pair_mode == "per_ranker" else {}
    for bundle in task_bundles(filters, provenance=False) if filters.red_team != "only" else ():
        context = bundle_context(bundle, filters, skipped=skipped)
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
                                    rank_distance=float(worse_rank - rank),
                                    ranking_id=ranking["id"],
                                    ranker=ranker,
                                    votes=1,
                                    agreement=1.0,
                                    guideline_version=ranking["guideline_version__number"],
                                    trust_weight=trust.get(ranking["ranker_id"], DEFAULT_TRUST),
                                )
        else:
            yield from _aggregated_pairs(bundle, context, filters)
    if filters.red_team != "exclude":
        yield from red_team_pair_records(filters, skipped=skipped)


def red_team_pair_records(
    filters: ExportFilters, *, skipped: Counter | None = None
) -> Iterator[dict]:
    """One pair per corrected attack: the trainer's correction chosen over the failed reply.

    One trainer's judgement, like a demonstration: ``votes`` 1, and neither ``min_agreement``
    nor ``exclude_flags`` applies (``red_team="exclude"`` leaves these pairs out). An attack
    without a prompt is skipped (counted in ``skipped``), never written with an empty one.
    """
    for chunk in red_team_pair_chunks(
        finished_bounds=day_bounds(filters),
        exclude_owner_ids=filters.exclude_trainer_ids,
        model_version_ids=filters.model_version_ids,
        guideline_versions=filters.guideline_versions,
        chunk_size=CHUNK_SIZE,
        project_ids=filters.project_ids,
    ):
        for attack in chunk:
            conversation_id = attack["conversation_id"]
            split = chosen_split(conversation_id, filters)
            if split is None:
                continue
            if not attack["prompt_messages"]:
                if skipped is not None:
                    skipped[SKIPPED_ATTACKS_WITHOUT_PROMPT] += 1
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
                "rank_distance": 1.0,
                "ranking_id": None,
                "ranker": pseudonym(attack["conversation__owner_id"], enabled=filters.pseudonymize),
                "votes": 1,
                "agreement": 1.0,
                "guideline_version": attack["correction__guideline_version__number"],
                "project": None,
                "trust_weight": None,
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
        rank_distances = distances[winner, loser]
        yield _pair_record(
            context,
            bundle.task["pk"],
            winner,
            loser,
            rank_distance=sum(rank_distances) / len(rank_distances),
            ranking_id=None,
            ranker=None,
            votes=forward + backward,
            agreement=agreement,
            guideline_version=guideline_version,
        )
