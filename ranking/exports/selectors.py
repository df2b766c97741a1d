"""Reads of exports: the export list, and export records for other apps (training reads its
data through these, with the same filters and split as an export file)."""

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
