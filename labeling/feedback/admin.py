from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from labeling.feedback.models import Feedback


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # What a trainer said, as the feedback services checked it (known report categories, a
    # filter report naming the result it disputes); exports and the overview count it. Shown,
    # not edited.
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
    list_select_related = ("user", "model_version", "message", "sample")
