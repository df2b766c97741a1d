from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

from config.admin import ReadOnlyAdminMixin
from labeling.redteam import selectors, services
from labeling.redteam.models import Attack, AttackResult, AttackRun, AttackRunAttack
from sampler.jobs.admin import JobAdminMixin

# What a run sends and scores of an attack: the prompt, the failed reply and where it is, the
# model that wrote it. Read-only once a run has the attack (``AttackAdmin.get_readonly_fields``).
RUN_FIELDS = (
    "conversation",
    "message",
    "prompt_message",
    "prompt_messages",
    "model_version",
    "project",
)


class AttackAdminForm(forms.ModelForm):
    """An attack changed or added by hand passes the checks a trainer's mark passes
    (``services.attack_check``): a refusal is the form's error, on the field it names, or on
    the reply (``message``) when the reply is what cannot be marked. What a mark takes from the
    reply (its conversation, project, prompt turn and prompt messages, model version) must be
    the reply's. A field the admin shows read-only is not changed: the check takes the attack's
    reply as stored, and no other."""

    class Meta:
        model = Attack
        fields = (
            "conversation",
            "message",
            "prompt_message",
            "prompt_messages",
            "category",
            "note",
            "model_version",
            "guideline_version",
            "correction",
            "created_by",
            "project",
        )

    def clean(self) -> dict:
        cleaned = super().clean()
        required = ("message", "category", "note")
        if any(name in self.fields and name not in cleaned for name in required):
            return cleaned  # the field's own error says why
        message = cleaned["message"] if "message" in self.fields else self.instance.message
        project = cleaned.get("project")
        try:
            cleaned["note"] = services.attack_check(
                message=message,
                category=cleaned["category"],
                note=cleaned["note"],
                attack=self.instance if self.instance.pk is not None else None,
                conversation=cleaned.get("conversation"),
                prompt_message=cleaned.get("prompt_message"),
                prompt_messages=cleaned.get("prompt_messages"),
                # A version cleared (None) is checked too; one not on the form is not.
                model_version=cleaned.get("model_version", services.UNSET),
                project_id=project.pk if project is not None else None,
                correction=cleaned.get("correction"),
            )
        except ValidationError as error:
            on_reply = "message" if "message" in self.fields else None
            self.add_error(None if hasattr(error, "error_dict") else on_reply, error)
        return cleaned


@admin.register(Attack)
class AttackAdmin(admin.ModelAdmin):
    form = AttackAdminForm
    list_display = ("id", "category", "model_version", "created_by", "correction", "created_at")
    list_filter = ("category", "model_version", "created_at")
    search_fields = ("note", "message__content", "prompt_message__content", "created_by__username")
    raw_id_fields = (
        "conversation",
        "message",
        "prompt_message",
        "correction",
        "created_by",
        "guideline_version",
    )
    readonly_fields = ("created_at",)
    list_select_related = ("model_version", "created_by", "correction")

    def get_readonly_fields(self, request, obj: Attack | None = None) -> tuple[str, ...]:
        """Once a run has the attack, what it sent and scored (``RUN_FIELDS``, and the
        correction once written) stays as it was, so the run's results match the attack; its
        category (each result keeps its own), note, guideline version and author stay
        editable. Deleting the run makes them editable again."""
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is None or not selectors.attack_has_run(attack=obj):
            return fields
        correction = ("correction",) if obj.correction_id is not None else ()
        return (*fields, *RUN_FIELDS, *correction)


class AttackResultInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = AttackResult
    extra = 0
    raw_id_fields = ("attack", "sample")


@admin.register(AttackRun)
class AttackRunAdmin(JobAdminMixin, admin.ModelAdmin):
    """A run is asked for from the Red team page (``attack_run_create``), which checks and
    queues it (no add page, as for every job). What it sends and scores with (version,
    reward model, seed, sampling parameters, requester, project, the run it retries) and what
    it recorded (content filter, attack count, progress) are read-only here, as every job's
    fields are: a run resumed, retried or retried for its failed attacks sends what it was
    asked for, and its results stay the record of it. Deleting a run takes its results with
    it."""

    list_display = ("id", "model_version", "status", "attack_count", "progress", "created_at")
    list_filter = ("status", "model_version")
    search_fields = ("model_version__name", "error", "requested_by__username")
    inlines = [AttackResultInline]


@admin.register(AttackResult)
class AttackResultAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What a run sent and what came back (the reply, its filter verdict and reward scores),
    written by the run alone (``attack_run_execute``): shown, never added, changed or deleted
    here; a result goes with its run."""

    list_display = ("id", "run", "attack", "filter_flagged", "reward_score", "created_at")
    list_filter = ("filter_flagged", "error_permanent", "category", "run")
    search_fields = ("text", "error", "prompt", "attack__message__content")
    raw_id_fields = ("run", "attack", "sample")
    readonly_fields = ("created_at",)


@admin.register(AttackRunAttack)
class AttackRunAttackAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A run's set, fixed by ``attack_run_create`` when the run is asked for: shown, never
    changed here (an attack added would be sent by a resumed run, one removed would leave its
    count wrong); an attack withdrawn or deleted takes its rows with it."""

    list_display = ("id", "run", "attack")
    list_filter = ("run__status",)
    search_fields = ("attack__message__content", "attack__note")
    raw_id_fields = ("run", "attack", "generation_job")
    list_select_related = ("run", "attack")
