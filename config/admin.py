"""What admin pages share across apps."""

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse


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


class RacedSaveAdminMixin:
    """Mixed into a ModelAdmin whose save goes through a service that refuses a unique value
    another save took at the same moment (``config.querysets.saved_or_refused``), on one of
    ``raced_fields``. Both forms' checks read the table before either save committed; the
    second save is refused, its transaction (history entry included) rolled back, and the page
    answers as if posted now: the form again, whose check finds the value taken and says so on
    its field, nothing saved."""

    raced_fields: tuple[str, ...] = ()

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as error:
            if not set(self.raced_fields) & set(getattr(error, "error_dict", {})):
                raise
        return super().changeform_view(request, object_id, form_url, extra_context)
