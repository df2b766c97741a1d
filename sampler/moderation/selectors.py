from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence

from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Value, When

from sampler.moderation.filters import content_filter_identity
from sampler.moderation.models import ContentFilterProblem, ModerationResult, text_sha256

# Which of a text's verdicts is shown: the configured filter's (name and version) where it has
# one, else the newest, whatever filter made it. Switching the filter from A to B and back to A
# finds A's verdict again rather than storing another one, so "newest" alone would show B's.


def moderation_results_shown_first() -> QuerySet[ModerationResult]:
    """Verdicts ordered as they are preferred for showing: the configured filter's first, then
    the newest (for a template's ``moderation_results.all|first``, through a prefetch)."""
    results = ModerationResult.objects.all()
    identity = content_filter_identity()
    if identity is None:
        return results.order_by("-created_at", "-id")
    name, version = identity
    return results.annotate(
        by_configured_filter=Case(
            When(filter_name=name, filter_version=version, then=Value(0)), default=Value(1)
        )
    ).order_by("by_configured_filter", "-created_at", "-id")


def _shown(
    results: Iterable[ModerationResult], key: Callable[[ModerationResult], Hashable]
) -> dict:
    """The verdict shown for each ``key(result)`` among ``results`` (oldest first): the
    configured filter's where there is one, else the newest."""
    identity = content_filter_identity()
    newest: dict = {}
    configured: dict = {}
    for result in results:
        newest[key(result)] = result
        if (result.filter_name, result.filter_version) == identity:
            configured[key(result)] = result
    return newest | configured


def moderation_shown_by_sample(*, sample_ids: Sequence[int]) -> dict[int, ModerationResult]:
    """The verdict shown on each sample: the configured filter's, else the newest; one query."""
    return _shown(
        ModerationResult.objects.filter(sample_id__in=list(sample_ids)).order_by(
            "created_at", "id"
        ),
        key=lambda result: result.sample_id,
    )


def moderation_shown_of_texts(
    *, texts: Sequence[tuple[str, int | None]]
) -> list[ModerationResult | None]:
    """The verdict shown on each text, given as (text, id of the sample whose text it is, or
    None when it is no sample's text): the sample's, else the one on the text itself (a
    suggestion its writer edited keeps its sample, but a verdict on the suggestion is about
    other words); of those, the configured filter's, else the newest; None where the filter
    never saw the text. One query."""
    sample_ids = [sample_id for _, sample_id in texts if sample_id is not None]
    keys = [text_sha256(text) for text, sample_id in texts if sample_id is None]
    shown = _shown(
        ModerationResult.objects.filter(
            Q(sample_id__in=sample_ids) | Q(sample__isnull=True, text_sha256__in=keys)
        ).order_by("created_at", "id"),
        # A sample's verdicts by its id, a text's by its key: the two never collide.
        key=lambda result: result.sample_id or result.text_sha256,
    )
    return [
        shown.get(text_sha256(text)) if sample_id is None else shown.get(sample_id)
        for text, sample_id in texts
    ]


def moderation_of_sample_exists(*, sample: OuterRef, name: str, version: str) -> Exists:
    """Whether the sample ``sample`` (an outer query's reference to it) has a verdict by the
    filter ``name`` at ``version``: a subquery for filtering rows that hold a sample."""
    return Exists(
        ModerationResult.objects.filter(sample_id=sample, filter_name=name, filter_version=version)
    )


def content_filter_problem() -> ContentFilterProblem | None:
    """Why the configured filter cannot run, as a worker last found it; None when it runs (or
    no worker has tried it since it was fixed)."""
    return ContentFilterProblem.objects.first()
