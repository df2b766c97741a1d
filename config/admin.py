"""What admin pages share across apps."""

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Mixed into a ModelAdmin whose rows are written only by a service (which keeps the
    invariants, counters and history the rest of the app reads): the admin lists and shows
    them, and neither adds, changes nor deletes any. A row still goes with the row it belongs
    to (a user's guideline reads, the feedback on a deleted conversation's replies), as the
    database's CASCADE says: only this model's own pages refuse to delete."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # The admin asks this too of each row another model's delete (its page, or the bulk
        # action on its list) would take with it: refusing there would block that delete.
        match = getattr(request, "resolver_match", None)
        url_name = (match.url_name or "") if match is not None else ""
        own = f"{self.opts.app_label}_{self.opts.model_name}_"
        deleting_another = url_name.endswith(
            ("_delete", "_changelist")
        ) and not url_name.startswith(own)
        return deleting_another and super().has_delete_permission(request, obj)
