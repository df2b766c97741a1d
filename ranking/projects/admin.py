from django.contrib import admin

from ranking.projects.models import Project, ProjectPolicy


class ProjectPolicyInline(admin.TabularInline):
    model = ProjectPolicy
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "slug",
        "status",
        "alternatives",
        "overlap",
        "target_rankings",
        "deadline",
    )
    list_filter = ("status", "selection", "qualification_required")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("trainer_groups",)
    inlines = [ProjectPolicyInline]


@admin.register(ProjectPolicy)
class ProjectPolicyAdmin(admin.ModelAdmin):
    list_display = ("project", "model_version", "weight")
    list_filter = ("project", "model_version__kind")
    search_fields = ("project__name", "model_version__name")
