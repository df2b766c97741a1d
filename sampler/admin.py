from django.contrib import admin

from sampler.models import (
    GenerationJob,
    ModelComparison,
    ModelVersion,
    ModerationResult,
    Sample,
    TrainingRun,
)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "source", "is_active", "parent", "training_run", "created_at")
    list_filter = ("kind", "source", "is_active")
    search_fields = ("name", "path", "description")
    raw_id_fields = ("parent", "training_run")
    readonly_fields = ("is_active", "activated_at", "created_at")


class SampleInline(admin.TabularInline):
    model = Sample
    extra = 0
    fields = ("index", "text", "token_count", "finish_reason", "logprob_sum")
    readonly_fields = fields
    can_delete = False


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "purpose",
        "model_version",
        "n",
        "seed",
        "requested_by",
        "created_at",
        "duration_ms",
    )
    list_filter = ("status", "purpose", "model_version", "created_at")
    search_fields = ("id", "error", "notes", "requested_by__username", "celery_task_id")
    raw_id_fields = ("prefix_message", "requested_by")
    readonly_fields = (
        "created_at",
        "started_at",
        "finished_at",
        "duration_ms",
        "attempts",
        "worker",
    )
    date_hierarchy = "created_at"
    inlines = [SampleInline]


@admin.register(Sample)
class SampleAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "job",
        "index",
        "short_text",
        "token_count",
        "finish_reason",
        "logprob_sum",
    )
    list_filter = ("finish_reason", "job__model_version")
    search_fields = ("text",)
    raw_id_fields = ("job",)

    @admin.display(description="Text")
    def short_text(self, obj: Sample) -> str:
        return obj.text[:80]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
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
    readonly_fields = ("created_at", "started_at", "finished_at")


@admin.register(ModerationResult)
class ModerationResultAdmin(admin.ModelAdmin):
    list_display = ("id", "sample", "filter_name", "filter_version", "flagged", "categories")
    list_filter = ("flagged", "filter_name", "filter_version", "created_at")
    search_fields = ("sample__text",)
    raw_id_fields = ("sample",)
    readonly_fields = ("created_at",)


@admin.register(ModelComparison)
class ModelComparisonAdmin(admin.ModelAdmin):
    list_display = ("id", "version_a", "version_b", "reward_version", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("version_a__name", "version_b__name", "error")
    raw_id_fields = ("version_a", "version_b", "reward_version", "requested_by")


# Worker heartbeats' admin lives in their feature package.
from sampler.workers import admin as workers_admin  # noqa: E402, F401
