"""Reads of exports: the export list, and export records for other apps (training reads its
data through these, with the same filters and split as an export file)."""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from ranking.exports.filters import ExportFilters
from ranking.exports.models import DatasetExport, skipped_summary
from ranking.exports.pipeline import records, source_count


def dataset_export_list() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("created_by").order_by("-created_at")


def export_records(*, format: str, filters: ExportFilters) -> Iterator[dict]:
    """The records an export file of ``format`` would hold, streamed (memory stays flat)."""
    return records(format, filters)


@dataclass(frozen=True)
class ExportPreview:
    """What an export of some format and filters would write, before it is started."""

    sources: int  # rankings (or finished conversations) the rows are made from
    rows: dict[str, int]  # per split ("train", "test")
    skipped: dict[str, int]  # as ``DatasetExport.skipped``: reason -> how many

    @property
    def skipped_summary(self) -> str:
        return skipped_summary(self.skipped)


def export_preview_get(*, format: str, filters: ExportFilters) -> ExportPreview:
    """The rows an export of ``format`` would write, per split, and what it would skip: the
    records are built (streamed, memory stays flat) and counted as the export does, so the
    preview is exact."""
    skipped: Counter = Counter()
    counts = Counter(record["split"] for record in records(format, filters, skipped=skipped))
    return ExportPreview(
        sources=source_count(format, filters),
        rows={split: counts.get(split, 0) for split in ("train", "test")},
        skipped=dict(skipped),
    )
