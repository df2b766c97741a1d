from django.contrib import admin

from ranking.exports.models import DatasetExport
from sampler.jobs.admin import LIFECYCLE_FIELDS, JobAdminMixin


@admin.register(DatasetExport)
class DatasetExportAdmin(JobAdminMixin, admin.ModelAdmin):
    """Exports start from the export page, which queues them; a row added here would have no
    queue and no message, and stay queued without ever running."""

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
    raw_id_fields = ("created_by",)
    readonly_fields = (
        "sha256",
        "size_bytes",
        "row_count",
        "skipped",
        "file_path",
        "created_at",
        *LIFECYCLE_FIELDS,
    )

    def has_add_permission(self, request) -> bool:
        return False
