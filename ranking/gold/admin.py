from django.contrib import admin

from ranking.gold.models import Qualification


@admin.register(Qualification)
class QualificationAdmin(admin.ModelAdmin):
    list_display = ("trainer", "project", "status", "gold_ranked", "accuracy", "decided_at")
    list_filter = ("status", "project")
    search_fields = ("trainer__username", "project__name", "reason")
    readonly_fields = ("decided_at",)
