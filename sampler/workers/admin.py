from django.contrib import admin

from sampler.workers.models import WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("name", "queues", "hostname", "pid", "started_at", "last_seen")
    list_filter = ("hostname",)
    search_fields = ("name", "hostname")
    readonly_fields = ("name", "queues", "hostname", "pid", "started_at", "last_seen")

    def has_add_permission(self, request) -> bool:
        return False  # written by the workers themselves
