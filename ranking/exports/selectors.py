"""Reads of exports: the export list, and export records for other apps (training reads its
data through these, with the same filters and split as an export file)."""

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from ranking.exports.filters import ExportFilters
from ranking.exports.models import DatasetExport, skipped_summary
from ranking.exports.pipeline import records


def dataset_export_list() -> QuerySet[DatasetExport]:
    return DatasetExport.objects.select_related("created_by").order_by("-created_at")


def export_records(*, format: str, filters: ExportFilters) -> Iterator[dict]:
    """The records an export file of ``format`` would hold, streamed (memory stays flat)."""
    return records(format, filters)


@dataclass(frozen=True)
class ExportPreview:
    """What an export of some format and filters would write, before it is started."""

    sources: int  # rankings (or ranked tasks, or finished conversations) the rows come from
    unit: str  # what ``sources`` counts, in words
    rows: dict[str, int]  # per split ("train", "test")
    skipped: dict[str, int]  # as ``DatasetExport.skipped``: reason -> how many

    @property
    def skipped_summary(self) -> str:
        return skipped_summary(self.skipped)


def export_preview_get(*, format: str, filters: ExportFilters) -> ExportPreview:
    """The rows an export of ``format`` would write, per split, what it would skip, and how
    many rankings (finished conversations, for demonstrations; ranked tasks, for aggregated
    pairs, which stand for all of a task's rankers and name no ranking) the rows come from: the
    records are built (streamed, memory stays flat) and counted as the export does, every
    filter (split, agreement) applied, so the preview is exact. The records of one source come
    one after another, so sources are counted as the key changes."""
    if format == DatasetExport.Format.DEMONSTRATIONS:
        key, unit = "conversation_id", "finished conversations"
    elif format == DatasetExport.Format.PAIRS and filters.pair_mode == "aggregated":
        key, unit = "task_id", "ranked tasks"
    else:
        key, unit = "ranking_id", "rankings"
    skipped: Counter = Counter()
    counts: Counter = Counter()
    sources, previous = 0, None
    for record in records(format, filters, skipped=skipped):
        counts[record["split"]] += 1
        source = record[key]
        # Red-team pairs (no ranking, no task) come from neither.
        if source is not None and source != previous:
            sources += 1
        previous = source
    return ExportPreview(
        sources=sources,
        unit=unit,
        rows={split: counts.get(split, 0) for split in ("train", "test")},
        skipped=dict(skipped),
    )
