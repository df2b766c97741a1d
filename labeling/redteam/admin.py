from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from labeling.redteam.models import Attack, AttackResult, AttackRun, AttackRunAttack
from sampler.jobs.admin import LIFECYCLE_FIELDS, JobAdminMixin


@admin.register(Attack)
class AttackAdmin(admin.ModelAdmin):
    list_display = ("id", "category", "model_version", "created_by", "correction", "created_at")
    list_filter = ("category", "model_version", "created_at")
    search_fields = ("note", "message__content", "prompt_message__content", "created_by__username")
    raw_id_fields = (
        "conversation",
        "message",
        "prompt_message",
        "correction",
        "created_by",
        "guideline_version",
    )
    readonly_fields = ("created_at",)
    list_select_related = ("model_version", "created_by", "correction")


class AttackResultInline(admin.TabularInline):
    model = AttackResult
    extra = 0
    raw_id_fields = ("attack", "sample")
    readonly_fields = ("created_at",)


@admin.register(AttackRun)
class AttackRunAdmin(JobAdminMixin, admin.ModelAdmin):
    list_display = ("id", "model_version", "status", "attack_count", "progress", "created_at")
    list_filter = ("status", "model_version")
    search_fields = ("model_version__name", "error", "requested_by__username")
    raw_id_fields = ("requested_by",)
    readonly_fields = ("created_at", *LIFECYCLE_FIELDS)
    inlines = [AttackResultInline]


@admin.register(AttackResult)
class AttackResultAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "attack", "filter_flagged", "reward_score", "created_at")
    list_filter = ("filter_flagged", "category", "run")
    search_fields = ("text", "error", "prompt", "attack__message__content")
    raw_id_fields = ("run", "attack", "sample")
    readonly_fields = ("created_at",)


@admin.register(AttackRunAttack)
class AttackRunAttackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A run's set, fixed by ``attack_run_create`` when the run is asked for: shown, never
    changed here (an attack added would be sent by a resumed run, one removed would leave its
    count wrong); an attack withdrawn or deleted takes its rows with it."""

    list_display = ("id", "run", "attack")
    list_filter = ("run__status",)
    search_fields = ("attack__message__content", "attack__note")
    raw_id_fields = ("run", "attack", "generation_job")
    list_select_related = ("run", "attack")
