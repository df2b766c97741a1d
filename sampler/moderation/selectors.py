from __future__ import annotations

from collections.abc import Sequence

from sampler.moderation.models import ModerationResult


def moderation_latest_by_sample(*, sample_ids: Sequence[int]) -> dict[int, ModerationResult]:
    """The newest result of each sample, whatever filter made it, in one query."""
    latest: dict[int, ModerationResult] = {}
    for result in ModerationResult.objects.filter(sample_id__in=list(sample_ids)).order_by(
        "sample_id", "created_at", "id"
    ):
        latest[result.sample_id] = result
    return latest
