from django.contrib import admin

from sampler.jobs.admin import JobAdminMixin
from sampler.runs.models import TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(JobAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "base_version",
        "progress",
        "started_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("kind", "status", "created_at")
    search_fields = ("id", "log", "error", "started_by__username")
    raw_id_fields = ("base_version", "started_by")
