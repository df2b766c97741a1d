from django import forms
from django.contrib.auth.models import Group

from config.forms import ModelChoiceField, ModelMultipleChoiceField
from ranking.projects import services
from ranking.projects.models import Project
from sampler.registry.models import ModelVersion


class ProjectForm(forms.ModelForm):
    """The project's settings; ``policy``/``policy_weight``: one policy to sample from (more,
    with weights, through the API or the Django admin)."""

    policy = ModelChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY),
        required=False,
        empty_label="The globally active policy",
    )
    trainer_groups = ModelMultipleChoiceField(queryset=Group.objects.all(), required=False)
    guideline_url = forms.URLField(required=False, assume_scheme="https")

    class Meta:
        model = Project
        # What the service lets change, but the sampling parameters (JSON: the API and the
        # Django admin edit them).
        fields = [name for name in services.EDITABLE if name != "sampling_params"]
        widgets = {"deadline": forms.DateTimeInput(attrs={"type": "datetime-local"})}

    def service_fields(self) -> dict:
        data = dict(self.cleaned_data)
        policy = data.pop("policy", None)
        data["policies"] = [(policy, 1.0)] if policy else []
        return data


class GoldTaskForm(forms.Form):
    """A task of the project to copy as gold, with the expected order written as JSON tie
    groups of its reply ids (best first), or left empty to take the order its rankers agreed on."""

    task_id = forms.IntegerField(min_value=1)
    ordering = forms.JSONField(required=False, max_length=4000)


class ProjectChoiceForm(forms.Form):
    """A trainer's choice of where to rank: a project's slug, or empty for all their projects."""

    project = forms.SlugField(required=False, max_length=64)
