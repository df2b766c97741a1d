from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from config.admin import RacedSaveAdminMixin
from ranking.projects.selectors import sampling_context_lock
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_name_taken
from sampler.registry.services import (
    model_version_context_change_error,
    model_version_delete,
    model_version_kind_error,
    model_version_metrics_problem,
    model_version_name_problem,
    model_version_parent_error,
    model_version_save,
    model_version_serving_check,
)

# What a project's room to sample in depends on: a change of one is checked against the projects.
SAMPLING_FIELDS = frozenset({"kind", "path", "backend", "backend_options", "context_length"})


class ModelVersionAdminForm(forms.ModelForm):
    """The serving configuration is checked as the API checks it (options per backend, a
    context length for openai versions; the model found here when its path or backend
    changes); the active version of a kind and a project's policy
    keep their kind; a version is never its own ancestor; its context keeps room for the
    max_new_tokens of each project that samples from it. A name another version has, in any
    letter case, is refused. Metrics keep the shape what reads them takes
    (``model_version_metrics_problem``)."""

    class Meta:
        model = ModelVersion
        fields = (
            "name",
            "kind",
            "source",
            "path",
            "backend",
            "backend_options",
            "context_length",
            "parent",
            "training_run",
            "metrics",
            "description",
        )

    def clean_name(self) -> str:
        # Said as every door says it, naming the version that has the name in whichever case.
        name = self.cleaned_data["name"]
        # A name given before the rule held is kept as it is; a new one follows it.
        if name != self.instance.name and (problem := model_version_name_problem(name)):
            raise ValidationError(problem)
        if taken := model_version_name_taken(name=name, exclude_pk=self.instance.pk):
            raise ValidationError(taken)
        return name

    def clean_metrics(self) -> dict:
        metrics = self.cleaned_data["metrics"]
        if metrics is None:  # left empty (or null): none, as a version registered without any
            return {}
        if problem := model_version_metrics_problem(metrics):
            raise ValidationError(problem)
        return metrics

    def clean(self):
        data = super().clean()
        # Compared as cleaned (the form's changed_data counts a JSON field posted back as it
        # was as changed).
        changed = {
            name for name in SAMPLING_FIELDS if data.get(name) != getattr(self.instance, name)
        }
        if self.instance.pk is not None and changed:
            # Held until the admin's save commits, before the row's lock below: a project's save
            # under way is waited for, and its max_new_tokens checked as saved. A new version is
            # no project's and not active, and other fields change no project's room: those
            # saves take no lock, so project saves and promotions never wait on them.
            sampling_context_lock()
        # The saved row, read fresh and locked: the admin's save runs in this transaction.
        if kind_error := model_version_kind_error(version=self.instance, kind=data.get("kind")):
            self.add_error("kind", kind_error)
        parent_error = model_version_parent_error(version=self.instance, parent=data.get("parent"))
        if parent_error:
            self.add_error("parent", parent_error)
        try:
            backend, options, path, length = model_version_serving_check(
                kind=data.get("kind") or ModelVersion.Kind.POLICY,
                backend=data.get("backend") or ModelVersion.Backend.TRANSFORMERS,
                options=data.get("backend_options") or {},
                path=data.get("path") or "",
                context_length=data.get("context_length"),
                # Where the model is and what serves it unchanged: a version whose folder has
                # gone since stays editable (its promotion checks it again).
                loadable=self.instance.pk is None
                or bool({"path", "backend"} & set(self.changed_data)),
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
            return data
        if context_error := model_version_context_change_error(
            version=self.instance, context_length=length
        ):
            self.add_error("context_length", context_error)
        data.update(backend=backend, backend_options=options, path=path, context_length=length)
        return data


@admin.register(ModelVersion)
class ModelVersionAdmin(RacedSaveAdminMixin, admin.ModelAdmin):
    form = ModelVersionAdminForm
    list_display = (
        "name",
        "kind",
        "source",
        "backend",
        "is_active",
        "parent",
        "training_run",
        "created_at",
    )
    list_filter = ("kind", "source", "backend", "is_active")
    search_fields = ("name", "path", "description")
    raw_id_fields = ("parent", "training_run")
    readonly_fields = ("is_active", "activated_at", "created_at")
    raced_fields = ("name",)  # model_version_save

    def save_model(self, request, obj, form, change) -> None:
        # Only what the form edits: the row was read at the start of the request, and writing
        # all of it back would undo a promotion made meanwhile (is_active, activated_at).
        model_version_save(version=obj, fields=list(form.fields) if change else None)

    def has_delete_permission(self, request, obj=None) -> bool:
        # The active version of a kind stays until another is promoted: with no active policy,
        # the next suggestion would quietly register and serve SAMPLER_MODEL.
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    @transaction.atomic
    def changelist_view(self, request, extra_context=None):
        # A bulk delete writes its history entries before it deletes: one the delete refuses
        # (below) takes them back with it, rather than leaving "deleted" for rows still there.
        return super().changelist_view(request, extra_context)

    # The pages checked the rows as they read them; the delete checks them again, locked.
    def delete_model(self, request, obj) -> None:
        self.delete_queryset(request, ModelVersion.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset) -> None:
        try:
            model_version_delete(ids=list(queryset.values_list("pk", flat=True)))
        except ValidationError as error:
            raise PermissionDenied(" ".join(error.messages)) from error
