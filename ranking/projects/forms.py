from django import forms
from django.contrib.auth.models import Group
from django.utils import timezone

from config.forms import ModelChoiceField, ModelMultipleChoiceField
from ranking.projects import services
from ranking.projects.models import Project
from sampler.registry.models import ModelVersion


def deadline_help_text() -> str:
    """A browser's date-and-time box carries no offset: a form reads (and shows) the deadline
    in the current time zone, and says which, so nobody sets one hours off unknowingly (the API
    takes only times with an offset)."""
    zone = timezone.get_current_timezone_name()
    return f"Date and time in {zone} (the server's time zone)."


class ProjectForm(forms.ModelForm):
    """The project's settings but its policies (``policy_formset``)."""

    trainer_groups = ModelMultipleChoiceField(queryset=Group.objects.all(), required=False)
    guideline_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Project
        # What the service lets change, but the sampling parameters (JSON: the API and the
        # Django admin edit them).
        fields = [name for name in services.EDITABLE if name != "sampling_params"]
        widgets = {"deadline": forms.DateTimeInput(attrs={"type": "datetime-local"})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["deadline"].help_text = deadline_help_text()
        # The browser's number boxes offer the range the service takes.
        for name, (least, most, _) in services.LIMITS.items():
            if name in self.fields:
                self.fields[name].widget.attrs["min"] = least
                if most is not None:
                    self.fields[name].widget.attrs["max"] = most

    def clean(self) -> dict:
        # The service's sentences, on their fields, before the model's constraints (whose
        # message only names the constraint) are checked.
        cleaned = super().clean()
        errors = services.limit_errors(cleaned)
        clashes = services.project_clash_errors(
            name=cleaned.get("name"), slug=cleaned.get("slug"), pk=self.instance.pk
        )
        for name, message in (errors | clashes).items():
            self.add_error(name, message)
        return cleaned


class PolicyWeightForm(forms.Form):
    """One policy the project samples from and its weight; a row naming none is left out."""

    model_version = ModelChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY),
        required=False,
        label="Policy",
        empty_label="—",
    )
    weight = forms.FloatField(required=False, initial=1.0, help_text="empty: 1")

    def clean_weight(self) -> float | None:
        weight = self.cleaned_data["weight"]
        if weight is not None and not 0 < weight <= services.MAX_POLICY_WEIGHT:
            raise forms.ValidationError(
                f"A weight is a number above 0, at most {services.MAX_POLICY_WEIGHT:g}."
            )
        return weight


PolicyFormSet = forms.formset_factory(
    PolicyWeightForm, extra=1, max_num=services.MAX_POLICIES, validate_max=True
)


def policy_formset(data=None, *, project: Project | None = None) -> forms.BaseFormSet:
    """Every policy of ``project`` with its weight (so saving the page keeps them all), and one
    empty row to add one."""
    initial = [
        {"model_version": policy.model_version, "weight": policy.weight}
        for policy in (project.policies.select_related("model_version") if project else ())
    ]
    return PolicyFormSet(data, initial=initial, prefix="policies")


def chosen_policies(formset: forms.BaseFormSet) -> list[tuple[ModelVersion, float]]:
    """(version, weight) of the rows naming a policy, for the services' ``policies``."""
    return [
        (row["model_version"], 1.0 if row["weight"] is None else row["weight"])
        for row in formset.cleaned_data
        if row.get("model_version")
    ]


class OptionalJSONField(forms.JSONField):
    """A JSON box that shows nothing when it holds no value (Django's shows ``null``)."""

    def prepare_value(self, value):
        return "" if value is None else super().prepare_value(value)


class GoldTaskForm(forms.Form):
    """A task of the project to copy as gold, with the expected order written as JSON tie
    groups of its reply ids (best first), or left empty to take the order its rankers agreed on."""

    task_id = forms.IntegerField(min_value=1)
    ordering = OptionalJSONField(required=False, max_length=4000)


class ProjectChoiceForm(forms.Form):
    """A trainer's choice of where to rank: a project's slug, or empty for all their projects."""

    project = forms.SlugField(required=False, max_length=64)
