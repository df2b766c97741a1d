from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ranking.exports.filters import SCHEMA_VERSION, ExportFilters, pseudonym
from ranking.exports.reading import (
    DEFAULT_TRUST,
    bundle_context,
    export_trust,
    flagged_candidates,
    task_bundles,
)
from ranking.quality.trust import consensus_ranking


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


def flag_records(flags: dict | None) -> list[dict]:
    """A ranking's flags (stored by candidate id as text) as a list in candidate id order:
    9 before 10, not as the text sorts."""
    return [
        {"candidate_id": int(candidate), "flags": entry["flags"], "note": entry["note"]}
        for candidate, entry in sorted((flags or {}).items(), key=lambda item: int(item[0]))
    ]


def ranking_records(filters: ExportFilters, *, skipped: Counter | None = None) -> Iterator[dict]:
    """One record per ranking; ``skipped`` counts what is left out for lack of a prompt."""
    trust = export_trust(filters)
    for bundle in task_bundles(filters):
        context = bundle_context(bundle, filters, with_agreement=True, skipped=skipped)
        if context is None:
            continue
        candidates = [_candidate_record(c) for c in bundle.candidates]
        exported = [
            ranking
            for ranking in bundle.rankings
            if not flagged_candidates(ranking, filters.exclude_flags)
        ]
        consensus = consensus_ranking(
            (r["ordering"], trust.get(r["ranker_id"], DEFAULT_TRUST))
            for r in exported
            if not r["cannot_rank"]
        )
        for ranking in exported:
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
                # ranked / all_equal / all_bad / cannot_rank; whether the order submitted is the
                # order shown (null without an ordering); ms from showing to the first placement.
                "verdict": ranking["verdict"],
                "order_unchanged": ranking["order_unchanged"],
                "first_placement_ms": ranking["first_placement_ms"],
                # A list, not a dict keyed by id: every record then has the same schema.
                "flags": flag_records(ranking["flags"]),
                "rationale": ranking["rationale"],
                "presentation_order": ranking["presentation_order"],
                "ranker": pseudonym(ranking["ranker_id"], enabled=filters.pseudonymize),
                "duration_ms": ranking["duration_ms"],
                "started_at": ranking["started_at"].isoformat(),
                "submitted_at": ranking["submitted_at"].isoformat(),
                "task_agreement": context["agreement"],
                "guideline_version": ranking["guideline_version__number"],
                "project": context["project"],
                # The ranker's trust (one-coin Dawid-Skene, see the README) and the task's
                # trust-weighted consensus over the rankings exported with it.
                "trust_weight": trust.get(ranking["ranker_id"], DEFAULT_TRUST),
                "consensus": consensus,
            }
