"""Dataset exports as jobs: record the request, then write the file on a worker."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction

from ranking.exports.features import export_features, features_path
from ranking.exports.filters import FORMATS, ExportFilters
from ranking.exports.models import DatasetExport
from ranking.exports.pipeline import records, source_count, write_features, write_jsonl
from ranking.quality.services import trust_refresh_if_stale
from sampler.jobs.kinds import JobCancelled, JobContext
from sampler.jobs.services import job_enqueue

# Rows per source differ by format (pairs per ranking): progress is an estimate, capped.
ROWS_PER_SOURCE = {"pairs": 6, "rankings": 1, "demonstrations": 1}
# Progress (and the heartbeat) reaches the database at most this often.
PROGRESS_WRITE_SECONDS = 1.0


def dataset_export_create(
    *,
    created_by: AbstractBaseUser,
    format: str,
    filters: ExportFilters,
    compress: bool = True,
    queue: bool = True,
) -> DatasetExport:
    """Record an export request and queue it; bad formats or filters fail before anything runs.

    ``export.publication`` says whether the job queue took it (the export is kept either way).
    """
    if format not in FORMATS:
        raise ValidationError({"format": f"format must be one of {', '.join(FORMATS)}."})
    filters.check_format(format)
    export = DatasetExport.objects.create(
        format=format,
        filters={**filters.as_dict(), "compress": compress},
        created_by=created_by,
        # An export of one project belongs to it; of several or all, to the default project.
        **({"project_id": filters.project_ids[0]} if len(filters.project_ids) == 1 else {}),
    )
    export.publication = job_enqueue(job=export) if queue else None
    return export


def export_prepare(format: str, filters: ExportFilters) -> None:
    """Before writing a file: the stored trust estimate of the export's scope brought up to date,
    so that rankings and pairs read it rather than estimating while they stream."""
    if format in ("rankings", "pairs"):
        trust_refresh_if_stale(project_ids=filters.project_ids)


def _stored_filters(export: DatasetExport) -> tuple[ExportFilters, bool]:
    """(the export's filters, whether its file is gzipped), as its row keeps them."""
    stored = dict(export.filters)
    compress = stored.pop("compress", True)
    return ExportFilters.from_dict(stored), compress


def dataset_export_features(*, export: DatasetExport) -> dict:
    """The column types of ``export``'s records (what its ``<name>.features.json`` holds)."""
    filters, _ = _stored_filters(export)
    return export_features(export.format, pseudonymize=filters.pseudonymize)


def dataset_export_retried(export: DatasetExport) -> None:
    """A retried export is written from the start: the rows the ended attempt skipped go (its
    progress the retry clears, as for every kind of job)."""
    DatasetExport.objects.filter(pk=export.pk).update(skipped={})


def dataset_export_execute(context: JobContext) -> None:
    """Write the export's file and its column types beside it (``features_path``), under this
    attempt's own names, moved in place as the row is marked succeeded; a job run again writes
    them again from the start."""
    export = DatasetExport.objects.get(pk=context.job.pk)
    # The file is written from its first row again: so is the progress (an earlier attempt's
    # would show until the first rows are counted).
    context.heartbeat(progress=0.0)
    filters, compress = _stored_filters(export)
    export_prepare(export.format, filters)
    total_sources = max(1, source_count(export.format, filters))
    suffix = ".jsonl.gz" if compress else ".jsonl"
    final = Path(settings.EXPORT_ROOT) / f"export-{export.pk}-{export.format}{suffix}"

    last_write = 0.0

    def on_progress(rows: int) -> None:
        nonlocal last_write
        if time.monotonic() - last_write < PROGRESS_WRITE_SECONDS:
            return
        last_write = time.monotonic()
        rows_expected = total_sources * ROWS_PER_SOURCE[export.format]
        context.heartbeat(progress=min(0.99, rows / rows_expected))

    # This attempt's own files, moved to the export's names only while it holds the row (locked)
    # as it succeeds: a worker that lost the job meanwhile (cancelled, or taken over after a
    # stall and woken after its last heartbeat) never replaces the file another wrote and the
    # row describes, and leaves nothing behind.
    staged = final.with_name(f"{final.name}.{context.token}.staged")
    skipped: Counter = Counter()
    moved = False
    try:
        written = write_jsonl(
            records(export.format, filters, skipped=skipped),
            staged,
            compress=compress,
            on_progress=on_progress,
        )
        write_features(export.format, filters, features_path(staged))
        with transaction.atomic():
            # The row, marked succeeded, stays locked until the files are in place: neither a
            # takeover nor a cancellation lands in between.
            succeeded = context.succeed(
                progress=1.0,
                row_count=written.rows,
                size_bytes=written.size_bytes,
                sha256=written.sha256,
                file_path=str(final),
                skipped=dict(skipped),
            )
            if not succeeded:
                raise JobCancelled(f"Export {export.pk} is no longer this worker's.")
            moved = True  # from here the files at the export's names are this attempt's
            staged.replace(final)
            features_path(staged).replace(features_path(final))
    except BaseException:
        # Moved but not recorded (the transaction failed): no row names those files either.
        leftovers = [final, features_path(final)] if moved else []
        for path in [staged, features_path(staged), *leftovers]:
            path.unlink(missing_ok=True)
        raise
