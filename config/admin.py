"""What admin pages share across apps."""

from django.http import HttpRequest


class ReadOnlyAdminMixin:
    """Mixed into a ModelAdmin whose rows are written only by a service (which keeps the
    invariants, counters and history the rest of the app reads): the admin lists and shows
    them, and neither adds, changes nor deletes any."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
