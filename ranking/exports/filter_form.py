"""The database filters an export and a training run choose their data by, as form fields.

A module of its own, not ``forms.py``: the Training page's form in ``sampler.runs`` shares
these fields, and the import contracts keep other apps out of ranking's ``forms`` modules.
"""

from django import forms
from django.contrib.auth import get_user_model

from config.forms import ModelMultipleChoiceField
from ranking.exports.filters import FLAG_NAMES, MIN_AGREEMENT, MIN_AGREEMENT_BOUNDS
from ranking.projects.models import Project
from sampler.models import ModelVersion


class ExportFilterForm(forms.Form):
    """Dates, policies, agreement, flags, trainers and projects: the filters every database
    read of rankings takes. ``filter_values`` turns them into ``ExportFilters`` arguments."""

    # Labelled as the filters' template (``_filter_fields.html``) shows them.
    date_from = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        label="From",
        help_text="Rankings and conversations from this day on.",
    )
    date_to = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        label="To",
        help_text="Up to and including this day.",
    )
    model_versions = ModelMultipleChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY),
        required=False,
        label="Model versions",
        help_text="Only data these policies wrote; none chosen: all.",
    )
    min_agreement = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label=MIN_AGREEMENT,
        error_messages=MIN_AGREEMENT_BOUNDS,
        help_text="From 0 to 1: how far a task's rankers agree.",
    )
    exclude_flags = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in FLAG_NAMES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Exclude flagged as",
        help_text="Rankings with a reply flagged so are left out.",
    )
    exclude_trainers = ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"),
        required=False,
        label="Exclude trainers",
        help_text="Their rankings and conversations are left out.",
    )
    projects = ModelMultipleChoiceField(
        queryset=Project.objects.order_by("name"),
        required=False,
        label="Projects",
        help_text="None chosen: every project.",
    )

    @staticmethod
    def filter_values(data: dict) -> dict:
        """The ``ExportFilters`` arguments these fields set, from cleaned data."""
        return {
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
            "model_version_ids": tuple(v.pk for v in data.get("model_versions") or ()),
            "min_agreement": data.get("min_agreement"),
            "exclude_flags": tuple(data.get("exclude_flags") or ()),
            "exclude_trainer_ids": tuple(u.pk for u in data.get("exclude_trainers") or ()),
            "project_ids": tuple(p.pk for p in data.get("projects") or ()),
        }
