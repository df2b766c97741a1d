"""Ranking tasks, their candidates, leases and rankings, and the rows undos removed: shown here,
never written. Their status and counters (rankings and leases per task, a lease's state, a
qualification a gold ranking decided) are kept by the ranking services (prepare, claim, submit,
skip, undo, lease expiry), and the task pool and the exports read them; an edit or a delete here
would leave them wrong."""

from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from ranking.rank.models import Assignment, Candidate, Ranking, RankingTask, UndoRemoval


class CandidateInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Candidate
    extra = 0
    raw_id_fields = ("message",)


@admin.register(RankingTask)
class RankingTaskAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "status",
        "model_version",
        "rankings_count",
        "overlap_required",
        "created_at",
        "ready_at",
    )
    list_filter = ("status", "project", "model_version", "created_at")
    search_fields = ("id", "prefix_message__content", "source_message__content")
    raw_id_fields = ("source_message", "prefix_message", "generation_job")
    inlines = [CandidateInline]


@admin.register(Candidate)
class CandidateAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "task", "position", "is_source", "message")
    list_filter = ("is_source",)
    search_fields = ("message__content",)
    raw_id_fields = ("task", "message")


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "task", "trainer", "status", "leased_at", "expires_at", "closed_at")
    list_filter = ("status", "leased_at")
    search_fields = ("trainer__username", "skip_reason")
    raw_id_fields = ("task", "trainer")


@admin.register(Ranking)
class RankingAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "task", "ranker", "cannot_rank", "duration_ms", "submitted_at")
    list_filter = ("cannot_rank", "submitted_at")
    search_fields = ("ranker__username", "rationale")
    raw_id_fields = ("task", "assignment", "ranker")
    date_hierarchy = "submitted_at"


@admin.register(UndoRemoval)
class UndoRemovalAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "trainer", "ranking_id", "assignment_id", "removed_at")
    list_filter = ("removed_at",)
    search_fields = ("trainer__username",)
    raw_id_fields = ("trainer",)
