from django.contrib import admin

from config.admin import ReadOnlyAdminMixin
from sampler.moderation.models import ContentFilterProblem, ModerationResult


@admin.register(ModerationResult)
class ModerationResultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The content filter's verdicts, each written by the filter it names (at most one per
    sample, or per text, and filter version, reused by every later check under that version):
    shown, never added, changed or deleted here. A trainer's view that a verdict is wrong is
    their feedback on the reply; a filter that is wrong is changed in its configuration, whose
    new version judges again."""

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


@admin.register(ContentFilterProblem)
class ContentFilterProblemAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Why the configured content filter cannot run, as the last worker that tried it found
    (also on the feedback page): written and deleted by the workers, shown here."""

    list_display = ("id", "reason", "since", "seen_at")
    list_filter = ("since", "seen_at")
    search_fields = ("reason",)
