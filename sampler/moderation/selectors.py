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
    *, texts: Sequence[tuple[str, int | None, str | None]]
) -> list[ModerationResult | None]:
    """The newest result, whatever filter made it, on each text shown, given as (text, id of
    the sample it was written from or None, that sample's text or None): the sample's where
    the text is its sample's text, else the newest on the text itself (a suggestion its writer
    edited: a verdict on the suggestion is about other words); None where the filter never
    saw the text. One query."""
    sample_ids = [sample_id for text, sample_id, sample_text in texts if text == sample_text]
    keys = [text_sha256(text) for text, _, sample_text in texts if text != sample_text]
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
        by_sample.get(sample_id) if text == sample_text else by_text.get(text_sha256(text))
        for text, sample_id, sample_text in texts
    ]
