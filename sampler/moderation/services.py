from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from sampler.generation.models import Sample
from sampler.moderation.filters import ContentFilter, FilterResult, content_filter_get
from sampler.moderation.models import ContentFilterProblem, ModerationResult, text_sha256

log = logging.getLogger(__name__)

# The one row a problem with the filter is recorded in.
PROBLEM_ID = 1
# Samples per call of the filter when the sweep judges those stored while it could not run.
PENDING_SAMPLES_BATCH = 200


class ContentFilterUnavailable(Exception):
    """The configured filter cannot be built or loaded (recorded, with the reason)."""


def content_filter_ready() -> ContentFilter | None:
    """The configured filter, built and loaded (``load()``, where it has one: a classifier's
    model), for a worker about to filter texts; None when filtering is off. One that cannot be
    built or loaded (a setting refused, a classifier directory that does not load, a custom
    class that raises) raises ``ContentFilterUnavailable`` with the reason, once that reason is
    recorded (``ContentFilterProblem``, shown to staff) and logged: at ERROR the first time it
    is met, then at DEBUG, so a sweep each minute says it once. A filter that runs again
    deletes the record (logged at INFO); with no record, it writes nothing (one read: every
    worker task asks). Pass what it returns on to ``samples_moderate`` and ``texts_moderate``
    (``content_filter=``), so a task builds its filter once."""
    try:
        content_filter = content_filter_get()
        load = getattr(content_filter, "load", None)
        if load is not None:
            load()
    except Exception as error:  # whatever a filter's settings or class raise: recorded, said
        reason = f"{type(error).__name__}: {error}"
        _problem_record(reason, error)
        raise ContentFilterUnavailable(reason) from error
    problem = ContentFilterProblem.objects.filter(pk=PROBLEM_ID)
    # Read before it is deleted: the filter runs, most of the time, with no problem recorded.
    if problem.exists() and problem.delete()[0]:
        log.info("The content filter runs again.")
    return content_filter


def _problem_record(reason: str, error: Exception) -> None:
    """Record ``reason`` as the filter's problem; log it at ERROR when it is new."""
    now = timezone.now()
    with transaction.atomic():
        problem, created = ContentFilterProblem.objects.select_for_update().get_or_create(
            pk=PROBLEM_ID, defaults={"reason": reason, "since": now, "seen_at": now}
        )
        new = created or problem.reason != reason
        if not created:
            if new:
                problem.reason, problem.since = reason, now
            problem.seen_at = now
            problem.save(update_fields=["reason", "since", "seen_at"])
    log.log(
        logging.ERROR if new else logging.DEBUG,
        "The content filter cannot run, so the texts waiting for it wait on: %s",
        reason,
        # A setting's or a missing file's message says it all; anything else gets its traceback.
        exc_info=error if new and not isinstance(error, ImproperlyConfigured | OSError) else None,
    )


def _scored(content_filter: ContentFilter, texts: list[str]) -> list[FilterResult]:
    """The filter's result on each text, in order; ValueError when it gives another count."""
    scored = content_filter.score(texts)
    if len(scored) != len(texts):
        raise ValueError(
            f"Content filter {content_filter.name} returned {len(scored)} results "
            f"for {len(texts)} texts."
        )
    return scored


def _result(content_filter: ContentFilter, scored: FilterResult, **subject) -> ModerationResult:
    """A row for ``scored`` on ``subject`` (its ``sample``, or its ``text_sha256``)."""
    return ModerationResult(
        **subject,
        filter_name=content_filter.name,
        filter_version=content_filter.version,
        flagged=scored.flagged,
        categories=list(scored.categories),
        scores=dict(scored.scores),
        details=dict(scored.details),
    )


def samples_moderate(
    *, samples: Sequence[Sample], content_filter: ContentFilter | None = None
) -> dict[int, ModerationResult]:
    """Score the samples the configured filter has not scored yet; every sample's result, by id.
    ``content_filter``: the configured filter, already built (``content_filter_ready``); built
    here when not given.

    Idempotent: a sample already scored by this filter version is not scored again, and a
    concurrent run storing the same result is ignored (unique per sample and filter version).
    """
    if content_filter is None:
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
    scored = _scored(content_filter, [sample.text for sample in missing])
    ModerationResult.objects.bulk_create(
        [
            _result(content_filter, result, sample=sample)
            for sample, result in zip(missing, scored, strict=True)
        ],
        ignore_conflicts=True,
    )
    return {result.sample_id: result for result in current.all()}


def samples_moderate_pending(
    *,
    content_filter: ContentFilter,
    most: int,
    then: Callable[[dict[int, ModerationResult]], None] | None = None,
) -> tuple[int, int]:
    """Filter the samples stored while the filter could not run (``Sample.moderation_pending``),
    oldest first, in batches, with ``content_filter`` (ready to run), and mark each batch
    judged; how many were judged, and how many tried, as ``waiting_judge`` counts them.
    ``then``: called with each batch's verdicts (by sample id) in the transaction that marks
    it, for copies of a verdict kept elsewhere (a red-team result's)."""

    def judge(batch: list[Sample]) -> None:
        verdicts = samples_moderate(samples=batch, content_filter=content_filter)
        Sample.objects.filter(pk__in=[sample.pk for sample in batch]).update(
            moderation_pending=False
        )
        if then is not None:
            then(verdicts)

    return waiting_judge(
        Sample.objects.filter(moderation_pending=True),
        judge=judge,
        most=most,
        batch_size=PENDING_SAMPLES_BATCH,
        noun="samples",
    )


def waiting_judge(
    waiting: QuerySet,
    *,
    judge: Callable[[list], None],
    most: int | None,
    batch_size: int,
    noun: str,
) -> tuple[int, int]:
    """Run ``judge`` on the rows of ``waiting`` (rows waiting for the filter, which ``judge``
    marks done), by id, in batches of ``batch_size``, each in a transaction holding its rows
    (PostgreSQL): a batch held by another run is passed over. How many rows were judged, and
    how many tried (about ``most`` at the most, None: all; the batch that reaches it is the
    last). A batch ``judge`` raises on is logged (as ``noun``) and stays waiting for the next
    sweep; the batches after it go on."""
    done, tried, after = 0, 0, 0
    while most is None or tried < most:
        ids: list[int] = []
        try:
            with transaction.atomic():
                batch = list(
                    waiting.filter(pk__gt=after)
                    .order_by("pk")
                    .select_for_update(skip_locked=True)[:batch_size]
                )
                if not batch:
                    break
                ids = [row.pk for row in batch]
                after = ids[-1]
                judge(batch)
        except Exception:
            if not ids:  # the batch could not be read: no filter ran
                raise
            log.exception("The content filter failed on %s %s to %s.", noun, ids[0], ids[-1])
        else:
            done += len(ids)
        tried += len(ids)
    return done, tried


def samples_flagged_ids(*, samples: Sequence[Sample]) -> set[int]:
    """Ids of the samples the configured filter flags (scoring those it has not seen)."""
    return {
        sample_id
        for sample_id, result in samples_moderate(samples=samples).items()
        if result.flagged
    }


def texts_moderate(
    *, texts: Sequence[str], content_filter: ContentFilter | None = None
) -> dict[str, ModerationResult]:
    """Score the texts, each on its own (as no sample's), that the configured filter has not
    scored yet; every text's result, by text. ``content_filter`` and idempotence as in
    ``samples_moderate`` (unique per text and filter version)."""
    if content_filter is None:
        content_filter = content_filter_get()
    if content_filter is None or not texts:
        return {}
    by_key = {text_sha256(text): text for text in texts}
    current = ModerationResult.objects.filter(
        sample__isnull=True,
        text_sha256__in=list(by_key),
        filter_name=content_filter.name,
        filter_version=content_filter.version,
    )
    results = {result.text_sha256: result for result in current}
    missing = [key for key in by_key if key not in results]
    if missing:
        scored = _scored(content_filter, [by_key[key] for key in missing])
        ModerationResult.objects.bulk_create(
            [
                _result(content_filter, result, text_sha256=key)
                for key, result in zip(missing, scored, strict=True)
            ],
            ignore_conflicts=True,
        )
        results = {result.text_sha256: result for result in current.all()}
    return {by_key[key]: result for key, result in results.items()}


def text_flagged(*, text: str, sample: Sample | None) -> bool:
    """Whether the configured filter flags ``text``, written from ``sample`` (None: from no
    sample here), scoring it when it has not: the sample's verdict when ``text`` is the
    sample's text, else the verdict on ``text`` itself: a suggestion its writer edited holds
    other words than the filter saw in it, flagged ones taken out or added, and a text with no
    sample here (a model's reply brought in by an import) was never filtered as it was
    sampled."""
    if sample is not None and text == sample.text:
        return bool(samples_flagged_ids(samples=[sample]))
    result = texts_moderate(texts=[text]).get(text)
    return result is not None and result.flagged
