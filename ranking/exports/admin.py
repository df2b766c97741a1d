from django.contrib import admin

from ranking.exports.models import DatasetExport
from sampler.jobs.admin import JobAdminMixin


@admin.register(DatasetExport)
class DatasetExportAdmin(JobAdminMixin, admin.ModelAdmin):
    """Exports start from the export page, which queues them (no add page, as for every job).
    What an export was asked for, by whom, and what it wrote are read-only, as every job's
    fields are: the record of the file written."""

    list_display = (
        "id",
        "format",
        "status",
        "row_count",
        "size_bytes",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("format", "status", "created_at")
    search_fields = ("sha256", "created_by__username", "file_path")
