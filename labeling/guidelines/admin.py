from django.contrib import admin

from labeling.guidelines.models import GuidelineAcknowledgement, GuidelineVersion


@admin.register(GuidelineVersion)
class GuidelineVersionAdmin(admin.ModelAdmin):
    # Versions are written on the Guidelines page, where saving makes the next number.
    list_display = ("number", "change_note", "author", "created_at")
    list_filter = ("created_at", "author")
    search_fields = ("text", "change_note", "author__username")
    raw_id_fields = ("author",)
    readonly_fields = ("created_at",)


@admin.register(GuidelineAcknowledgement)
class GuidelineAcknowledgementAdmin(admin.ModelAdmin):
    list_display = ("user", "version", "acknowledged_at")
    list_filter = ("acknowledged_at", "version")
    search_fields = ("user__username",)
    raw_id_fields = ("user", "version")
