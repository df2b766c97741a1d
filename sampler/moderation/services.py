from __future__ import annotations

from collections.abc import Sequence

from sampler.generation.models import Sample
from sampler.moderation.filters import content_filter_get
from sampler.moderation.models import ModerationResult


def samples_moderate(*, samples: Sequence[Sample]) -> dict[int, ModerationResult]:
    """Score the samples the configured filter has not scored yet; every sample's result, by id.

    Idempotent: a sample already scored by this filter version is not scored again, and a
    concurrent run storing the same result is ignored (unique per sample and filter version).
    """
    content_filter = content_filter_get()
    if content_filter is None or not samples:
        return {}
    ids = [sample.pk for sample in samples]
    current = ModerationResult.objects.filter(
        sample_id__in=ids,
        filter_name=content_filter.name,
        filter_version=content_filter.version,
    )
    results = {result.sample_id: result for result in current}
    missing = [sample for sample in samples if sample.pk not in results]
    if not missing:
        return results
    scored = content_filter.score([sample.text for sample in missing])
    if len(scored) != len(missing):
        raise ValueError(
            f"Content filter {content_filter.name} returned {len(scored)} results "
            f"for {len(missing)} texts."
        )
    ModerationResult.objects.bulk_create(
        [
            ModerationResult(
                sample=sample,
                filter_name=content_filter.name,
                filter_version=content_filter.version,
                flagged=result.flagged,
                categories=list(result.categories),
                scores=dict(result.scores),
                details=dict(result.details),
            )
            for sample, result in zip(missing, scored, strict=True)
        ],
        ignore_conflicts=True,
    )
    return {result.sample_id: result for result in current.all()}


def samples_flagged_ids(*, samples: Sequence[Sample]) -> set[int]:
    """Ids of the samples the configured filter flags (scoring those it has not seen)."""
    return {
        sample_id
        for sample_id, result in samples_moderate(samples=samples).items()
        if result.flagged
    }
