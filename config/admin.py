"""What admin pages share across apps."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from config.text import deleted_meanwhile


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
    answers as if posted now, nothing saved: the form again, with the refusal on its field.
    It is not saved a second time: that save could be refused again by yet another racer (a
    server error), or pass a check that no longer sees the value (its holder renamed since) and
    write what was just refused. Where the form's own check now refuses the field, the check's
    words are said, once."""

    raced_fields: tuple[str, ...] = ()
    # The field that names a row to its admins (said when it was deleted meanwhile).
    deleted_name_field = "name"
    # What the save being answered was refused, per field (set on this page's own copy).
    refused_fields: dict[str, list[str]] = {}

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except self.model.DoesNotExist:
            # The save's service found the row deleted since the page read it (another admin's
            # delete, committed meanwhile): nothing of this save was kept, the row not made again.
            if object_id is None or self.model._default_manager.filter(pk=object_id).exists():
                raise
            return self.deleted_meanwhile(request)
        except ValidationError as error:
            if not hasattr(error, "error_dict"):
                raise
            refused = {
                field: messages
                for field, messages in error.message_dict.items()
                if field in self.raced_fields
            }
            if not refused:
                raise
        # A copy for this page: the admin itself serves every request at once.
        answering = type(self)(self.model, self.admin_site)
        answering.refused_fields = refused
        return answering.changeform_view(request, object_id, form_url, extra_context)

    def deleted_meanwhile(self, request: HttpRequest) -> HttpResponse:
        """The answer to a save of a row another admin deleted while the page was open: said
        so, on the list of what is left."""
        name = request.POST.get(self.deleted_name_field, "")
        self.message_user(
            request, deleted_meanwhile(self.opts.verbose_name, name), messages.WARNING
        )
        return redirect(f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist")

    def get_form(self, request: HttpRequest, obj=None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if not self.refused_fields:
            return form
        refused = self.refused_fields

        class RefusedForm(form):
            def full_clean(self) -> None:
                super().full_clean()
                for field, sentences in refused.items():
                    if field not in self._errors:
                        self.add_error(field, sentences)

        return RefusedForm
