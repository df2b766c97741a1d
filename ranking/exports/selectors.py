"""Reads of exports: the export list, and export records for other apps (training reads its
data through these, with the same filters and split as an export file)."""

from collections import Counter
from collections.abc import Iterator

from django.db.models import QuerySet

from ranking.exports.filters import ExportFilters
from ranking.exports.models import DatasetExport
from ranking.exports.pipeline import records, source_count


def dataset_export_list() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("created_by").order_by("-created_at")


def export_records(*, format: str, filters: ExportFilters) -> Iterator[dict]:
    """The records an export file of ``format`` would hold, streamed (memory stays flat)."""
    return records(format, filters)


def export_source_count(*, format: str, filters: ExportFilters) -> int:
    """How many rankings (or conversations) an export of ``format`` reads."""
    return source_count(format, filters)


def export_rows_by_split(*, format: str, filters: ExportFilters) -> dict[str, int]:
    """How many rows an export of ``format`` would write, per split ("train", "test"): the
    records are built (streamed, memory stays flat) and counted, so the preview is exact."""
    counts = Counter(record["split"] for record in records(format, filters))
    return {split: counts.get(split, 0) for split in ("train", "test")}
