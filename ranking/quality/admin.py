from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from ranking.quality.models import TrainerTrust, TrustEstimate


class TrainerTrustInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = TrainerTrust
    extra = 0
    readonly_fields = ("trainer", "trust", "judgements", "gold_judgements")


@admin.register(TrustEstimate)
class TrustEstimateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Made by the periodic refresh and by exports; read here, never added, edited or deleted."""

    list_display = ("project", "rankings", "last_ranking_id", "estimated_at")
    list_filter = ("project",)
    search_fields = ("project__name", "project__slug")
    readonly_fields = ("project", "rankings", "last_ranking_id", "estimated_at")
    inlines = [TrainerTrustInline]


@admin.register(TrainerTrust)
class TrainerTrustAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("trainer", "trust", "judgements", "gold_judgements", "estimate")
    list_filter = ("estimate__project",)
    search_fields = ("trainer__username",)
    readonly_fields = ("estimate", "trainer", "trust", "judgements", "gold_judgements")
