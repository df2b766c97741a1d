from django.contrib import admin

from sampler.moderation.models import ModerationResult


@admin.register(ModerationResult)
class ModerationResultAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "sample",
        "text_sha256",
        "filter_name",
        "filter_version",
        "flagged",
        "categories",
    )
    list_filter = ("flagged", "filter_name", "filter_version", "created_at")
    search_fields = ("sample__text",)
    raw_id_fields = ("sample",)
    readonly_fields = ("created_at",)
