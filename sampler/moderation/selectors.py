from __future__ import annotations

from collections.abc import Sequence

from sampler.generation.models import Sample
from sampler.moderation.models import ModerationResult
from sampler.moderation.services import samples_moderate


def samples_flagged_ids(*, samples: Sequence[Sample]) -> set[int]:
    """Ids of the samples the configured filter flags (scoring those it has not seen)."""
    return {
        sample_id
        for sample_id, result in samples_moderate(samples=samples).items()
        if result.flagged
    }


def moderation_latest_by_sample(*, sample_ids: Sequence[int]) -> dict[int, ModerationResult]:
    """The newest result of each sample, whatever filter made it, in one query."""
    latest: dict[int, ModerationResult] = {}
    for result in ModerationResult.objects.filter(sample_id__in=list(sample_ids)).order_by(
        "sample_id", "created_at", "id"
    ):
        latest[result.sample_id] = result
    return latest
