from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from sampler.generation.models import GenerationJob, Sample
from sampler.jobs.admin import JobAdminMixin


class SampleInline(admin.TabularInline):
    model = Sample
    extra = 0
    fields = ("index", "text", "token_count", "finish_reason", "logprob_sum", "logprob_kind")
    readonly_fields = fields
    can_delete = False


@admin.register(GenerationJob)
class GenerationJobAdmin(JobAdminMixin, admin.ModelAdmin):
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
    list_filter = ("status", "purpose", "queue", "model_version", "created_at")
    search_fields = ("id", "error", "notes", "requested_by__username", "worker")
    raw_id_fields = ("prefix_message", "requested_by")
    list_select_related = ("model_version", "requested_by")
    date_hierarchy = "created_at"
    inlines = [SampleInline]


@admin.register(Sample)
class SampleAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What a model wrote, stored with its job (``generation_job_execute``): shown, never added,
    changed or deleted here. Its content-filter verdict, its log-probabilities, the replies that
    are its text unedited and the rankings of it are all of those words; a sample goes with its
    job."""

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
