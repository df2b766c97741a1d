from django.contrib import admin

from sampler.comparisons.models import ModelComparison
from sampler.jobs.admin import LIFECYCLE_FIELDS, JobAdminMixin


@admin.register(ModelComparison)
class ModelComparisonAdmin(JobAdminMixin, admin.ModelAdmin):
    list_display = ("id", "version_a", "version_b", "reward_version", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("version_a__name", "version_b__name", "error")
    raw_id_fields = ("version_a", "version_b", "reward_version", "requested_by")
    readonly_fields = ("created_at", *LIFECYCLE_FIELDS)
