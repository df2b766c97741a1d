from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from labeling.guidelines.models import GuidelineAcknowledgement, GuidelineVersion


@admin.register(GuidelineVersion)
class GuidelineVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Versions are written on the Guidelines page, where saving makes the next number. A saved
    # version is history (messages, rankings, attacks and exports record its number): read-only.
    list_display = ("number", "project", "change_note", "author", "created_at")
    list_filter = ("project", "created_at", "author")
    search_fields = ("text", "change_note", "author__username")
    list_select_related = ("project", "author")


@admin.register(GuidelineAcknowledgement)
class GuidelineAcknowledgementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # Only the trainer records that they read a version ("I have read version N").
    list_display = ("user", "version", "acknowledged_at")
    list_filter = ("acknowledged_at", "version")
    search_fields = ("user__username",)
    list_select_related = ("user", "version")
