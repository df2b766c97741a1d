from django.contrib import admin

from labeling.feedback.models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "user",
        "message",
        "sample",
        "model_version",
        "rating",
        "categories",
        "filter_report",
        "updated_at",
    )
    list_filter = ("rating", "filter_report", "model_version", "updated_at")
    search_fields = ("comment", "user__username", "message__content", "sample__text")
    raw_id_fields = ("user", "message", "sample", "moderation")
    list_select_related = ("user", "model_version", "message", "sample")
    readonly_fields = ("created_at", "updated_at")
