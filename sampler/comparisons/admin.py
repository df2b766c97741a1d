from django.contrib import admin

from sampler.comparisons.models import ModelComparison, SideBySide, SideBySideVote
from sampler.jobs.admin import JobAdminMixin


@admin.register(ModelComparison)
class ModelComparisonAdmin(JobAdminMixin, admin.ModelAdmin):
    list_display = ("id", "version_a", "version_b", "reward_version", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("version_a__name", "version_b__name", "error")
    raw_id_fields = ("version_a", "version_b", "reward_version", "requested_by")


@admin.register(SideBySide)
class SideBySideAdmin(admin.ModelAdmin):
    list_display = ("id", "version_a", "version_b", "comparison", "created_at")
    list_filter = ("created_at",)
    search_fields = ("reply_a", "reply_b", "version_a__name", "version_b__name")
    raw_id_fields = ("comparison", "version_a", "version_b")
    # A comparison's name is its two versions' names.
    list_select_related = (
        "comparison__version_a",
        "comparison__version_b",
        "version_a",
        "version_b",
    )


@admin.register(SideBySideVote)
class SideBySideVoteAdmin(admin.ModelAdmin):
    list_display = ("id", "item", "voter", "choice", "a_shown_first", "created_at")
    list_filter = ("choice", "a_shown_first")
    search_fields = ("voter__username",)
    raw_id_fields = ("item", "voter")
