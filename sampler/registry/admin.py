from django.contrib import admin

from sampler.registry.models import ModelVersion


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "source", "is_active", "parent", "training_run", "created_at")
    list_filter = ("kind", "source", "is_active")
    search_fields = ("name", "path", "description")
    raw_id_fields = ("parent", "training_run")
    readonly_fields = ("is_active", "activated_at", "created_at")
