from django import forms
from django.contrib import admin

from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, ProjectPolicy
from ranking.projects.services import DEFAULT_PROJECT_OPEN


class ProjectAdminForm(forms.ModelForm):
    """The admin builds it for every field of Project (it names none itself)."""

    def clean_trainer_groups(self):
        groups = self.cleaned_data["trainer_groups"]
        if groups and self.instance.slug == DEFAULT_PROJECT_SLUG:
            raise forms.ValidationError(DEFAULT_PROJECT_OPEN)
        return groups


class ProjectPolicyInline(admin.TabularInline):
    model = ProjectPolicy
    extra = 0


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    form = ProjectAdminForm
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
