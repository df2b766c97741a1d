from django.contrib import admin

from ranking.quality.models import TrainerTrust, TrustEstimate


class TrainerTrustInline(admin.TabularInline):
    model = TrainerTrust
    extra = 0
    readonly_fields = ("trainer", "trust", "judgements", "gold_judgements")


@admin.register(TrustEstimate)
class TrustEstimateAdmin(admin.ModelAdmin):
    """Made by the periodic refresh and by exports; read here, not edited."""

    list_display = ("project", "rankings", "last_ranking_id", "estimated_at")
    list_filter = ("project",)
    search_fields = ("project__name", "project__slug")
    readonly_fields = ("project", "rankings", "last_ranking_id", "estimated_at")
    inlines = [TrainerTrustInline]


@admin.register(TrainerTrust)
class TrainerTrustAdmin(admin.ModelAdmin):
    list_display = ("trainer", "trust", "judgements", "gold_judgements", "estimate")
    list_filter = ("estimate__project",)
    search_fields = ("trainer__username",)
    readonly_fields = ("estimate", "trainer", "trust", "judgements", "gold_judgements")
