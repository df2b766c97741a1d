from django.contrib import admin

from accounts.models import ApiToken, IdempotencyKey
from config.admin import ReadOnlyAdminMixin


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their owners (account page, ``manage.py api_token``); admins see and
    revoke them (set "revoked at"), and never see a token itself: only its hash is stored."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("user", "name", "prefix", "key_hash", "created_at", "last_used_at")

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The keys sent with creating POSTs and the answers stored for their retries
    (config/idempotency.py): written only with the request's work, deleted by a periodic task
    once older than ``IDEMPOTENCY_KEY_TTL_SECONDS``; here, listed and shown."""

    list_display = ("user", "key", "method", "path", "status_code", "created_at")
    list_display_links = ("key",)
    list_filter = ("method", "status_code", "created_at")
    search_fields = ("key", "user__username")
    raw_id_fields = ("user",)
    date_hierarchy = "created_at"
