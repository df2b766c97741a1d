from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from config.admin import RacedSaveAdminMixin
from ranking.projects.forms import deadline_help_text
from ranking.projects.models import DEFAULT_PROJECT_SLUG, Project, ProjectPolicy
from ranking.projects.services import (
    DEFAULT_PROJECT_OPEN,
    project_clash_errors,
    project_context_error,
    project_policy_error,
    project_save,
    project_setting_errors,
)
from sampler.registry.models import ModelVersion


class ProjectAdminForm(forms.ModelForm):
    """The admin builds it for every field of Project (it names none itself); it refuses what
    the project services refuse (the Projects pages and the API save through them).

    ``policies_inline`` (set by ``ProjectAdmin.get_form``): the policies' inline is posted
    beside the project, and checks the project's context against the policies the save leaves
    (``ProjectPolicyFormSet``); without it, the form checks it against those saved."""

    policies_inline = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stored_slug = self.instance.slug if self.instance.pk else None
        self.stored_params = self.instance.sampling_params if self.instance.pk else None
        if "deadline" in self.fields:
            self.fields["deadline"].help_text = deadline_help_text()

    def clean_trainer_groups(self):
        groups = self.cleaned_data["trainer_groups"]
        if groups and self.instance.slug == DEFAULT_PROJECT_SLUG:
            raise forms.ValidationError(DEFAULT_PROJECT_OPEN)
        return groups

    def clean(self) -> dict:
        # Before the model's checks: a name or slug another project has (in any letter case)
        # is said once, naming that project's, not again as the constraint's sentence.
        cleaned = super().clean()
        clashes = project_clash_errors(
            name=cleaned.get("name"), slug=cleaned.get("slug"), pk=self.instance.pk
        )
        for field, message in clashes.items():
            self.add_error(field, message)
        return cleaned

    def _post_clean(self) -> None:
        # The instance holds the posted values only from here on.
        super()._post_clean()
        errors = project_setting_errors(
            project=self.instance,
            stored_slug=self.stored_slug,
            sampling_changed=self.instance.pk is None
            or self.instance.sampling_params != self.stored_params,
            context_checked=not self.policies_inline,
        )
        for field, message in errors.items():
            self.add_error(field, message)


class ProjectPolicyAdminForm(forms.ModelForm):
    """A policy of a project as the services take it: a policy version, a bounded weight."""

    def clean(self) -> dict:
        cleaned = super().clean()
        version, weight = cleaned.get("model_version"), cleaned.get("weight")
        error = None
        if version is not None and weight is not None:
            error = project_policy_error(version=version, weight=weight)
        if error:
            self.add_error(None, error)
        return cleaned


def policies_left_error(
    *, project: Project, versions: list[ModelVersion], params_changed: bool = False
) -> str | None:
    """Why ``project``'s ``max_new_tokens`` leaves a prompt no room in the context of
    ``versions``, the policies an admin's save leaves it, checked as the API and the Projects
    pages check the versions a save names (``project_context_error``, under
    ``sampling_context_lock``). None: it fits, or neither its sampling parameters
    (``params_changed``) nor its versions change (not checked, as there)."""
    if project.pk is not None and not params_changed:
        saved = set(
            ProjectPolicy.objects.filter(project=project.pk).values_list(
                "model_version_id", flat=True
            )
        )
        if {version.pk for version in versions} == saved:
            return None
    return project_context_error(project=project, policies=versions)


class ProjectPolicyFormSet(BaseInlineFormSet):
    """The policies posted beside a project. Once its rows are valid, the project's
    ``max_new_tokens`` (as the project's form read it, validated first) is checked against the
    versions the save leaves (``policies_left_error``): one it leaves no room in refuses the
    whole save."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        project = self.instance
        saved = (
            list(project.policies.select_related("model_version")) if project.pk is not None else []
        )
        shown = {form.instance.pk for form in self.initial_forms}
        versions = [policy.model_version for policy in saved if policy.pk not in shown]
        for form in self.forms:
            if form in self.extra_forms and not form.has_changed():
                continue
            if self.can_delete and self._should_delete_form(form):
                continue
            versions.append(form.instance.model_version)
        stored_params = (
            Project.objects.filter(pk=project.pk).values_list("sampling_params", flat=True).first()
        )
        problem = policies_left_error(
            project=project,
            versions=versions,
            params_changed=project.sampling_params != stored_params,
        )
        if problem:
            raise forms.ValidationError(problem)


class ProjectPolicyPageForm(ProjectPolicyAdminForm):
    """A policy on its own admin page: the project it is in, and the one it leaves when moved,
    are checked against the policies the save leaves each (``policies_left_error``)."""

    def _post_clean(self) -> None:
        super()._post_clean()
        if self.errors:
            return
        policy = self.instance
        stored = ProjectPolicy.objects.filter(pk=policy.pk).values_list("project_id", flat=True)
        for project in Project.objects.filter(pk__in=[policy.project_id, *stored]).order_by("pk"):
            others = project.policies.select_related("model_version").exclude(pk=policy.pk)
            versions = [other.model_version for other in others]
            if project.pk == policy.project_id:
                versions.append(policy.model_version)
            if problem := policies_left_error(project=project, versions=versions):
                self.add_error(None, problem)


def policies_deleted_error(*, policies: list[ProjectPolicy]) -> str | None:
    """Why deleting ``policies`` would leave a project a ``max_new_tokens`` its remaining
    policies (or, with none left, the active policy) have no room for (``policies_left_error``,
    each project in turn); None: every project keeps its room."""
    deleted = {policy.pk for policy in policies}
    projects = {policy.project_id for policy in policies}
    for project in Project.objects.filter(pk__in=projects).order_by("pk"):
        left = project.policies.select_related("model_version").exclude(pk__in=deleted)
        versions = [policy.model_version for policy in left]
        if problem := policies_left_error(project=project, versions=versions):
            return problem
    return None


def delete_selected_checked(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset
) -> HttpResponse | None:
    """Django's "Delete selected", refused (nothing deleted) for ``policies_deleted_error``:
    asked before the confirmation page and again, under the lock, with the deletion."""
    with transaction.atomic():
        if problem := policies_deleted_error(policies=list(queryset)):
            modeladmin.message_user(request, f"Not deleted: {problem}", messages.ERROR)
            return None
        return delete_selected(modeladmin, request, queryset)


class ProjectPolicyInline(admin.TabularInline):
    model = ProjectPolicy
    form = ProjectPolicyAdminForm
    formset = ProjectPolicyFormSet
    extra = 0


@admin.register(Project)
class ProjectAdmin(RacedSaveAdminMixin, admin.ModelAdmin):
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
    readonly_fields = ("pool_error",)
    inlines = [ProjectPolicyInline]
    raced_fields = ("name", "slug")  # project_save

    def save_model(self, request, obj, form, change) -> None:
        # Only what the form holds (its many-to-many fields are saved after, by the form): the
        # row was read at the start of the request, and writing all of it back would undo what
        # the workers wrote meanwhile (a pool fill's pool_error, shown read-only).
        fields = [
            field.name for field in Project._meta.concrete_fields if field.name in form.fields
        ]
        project_save(project=obj, fields=fields if change else None)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        # A fresh class each call: whether this request's page holds the policies' inline
        # (which a user without rights on policies is not shown).
        form.policies_inline = any(
            isinstance(inline, ProjectPolicyInline)
            for inline in self.get_inline_instances(request, obj)
        )
        return form


@admin.register(ProjectPolicy)
class ProjectPolicyAdmin(admin.ModelAdmin):
    form = ProjectPolicyPageForm
    list_display = ("project", "model_version", "weight")
    list_filter = ("project", "model_version__kind")
    search_fields = ("project__name", "model_version__name")

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        if "delete_selected" in actions:  # the same action, checked
            _, name, description = actions["delete_selected"]
            actions[name] = (delete_selected_checked, name, description)
        return actions

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        """Refused (nothing deleted, back to the policy's page) for ``policies_deleted_error``;
        the check's lock is held through the deletion."""
        with transaction.atomic():
            # As the admin reads it: an id that names no policy (or is no id) is its answer.
            policy = self.get_object(request, object_id)
            if policy is not None and (problem := policies_deleted_error(policies=[policy])):
                self.message_user(request, f"Not deleted: {problem}", messages.ERROR)
                return redirect("admin:ranking_projectpolicy_change", policy.pk)
            return super().delete_view(request, object_id, extra_context)
