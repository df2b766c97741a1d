from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q

from sampler.moderation.models import ModerationResult, text_sha256


def moderation_latest_by_sample(*, sample_ids: Sequence[int]) -> dict[int, ModerationResult]:
    """The newest result of each sample, whatever filter made it, in one query."""
    latest: dict[int, ModerationResult] = {}
    for result in ModerationResult.objects.filter(sample_id__in=list(sample_ids)).order_by(
        "sample_id", "created_at", "id"
    ):
        latest[result.sample_id] = result
    return latest


def moderation_latest_of_texts(
    *, texts: Sequence[tuple[str, int | None]]
) -> list[ModerationResult | None]:
    """The newest result, whatever filter made it, on each text shown, given as (text, id of
    the sample whose text it is, or None when it is no sample's text): the sample's, else the
    newest on the text itself (a suggestion its writer edited keeps its sample, but a verdict
    on the suggestion is about other words); None where the filter never saw the text. One
    query."""
    sample_ids = [sample_id for _, sample_id in texts if sample_id is not None]
    keys = [text_sha256(text) for text, sample_id in texts if sample_id is None]
    by_sample: dict[int, ModerationResult] = {}
    by_text: dict[str, ModerationResult] = {}
    for result in ModerationResult.objects.filter(
        Q(sample_id__in=sample_ids) | Q(sample__isnull=True, text_sha256__in=keys)
    ).order_by("created_at", "id"):
        if result.sample_id is not None:
            by_sample[result.sample_id] = result
        else:
            by_text[result.text_sha256] = result
    return [
        by_text.get(text_sha256(text)) if sample_id is None else by_sample.get(sample_id)
        for text, sample_id in texts
    ]
