from django import forms

from config.forms import (
    FilterForm,
    ModelChoiceField,
    ModelVersionFilterField,
    check_dates_in_order,
)
from ranking.projects.selectors import project_list
from ranking.quality.selectors import model_version_choices


class QualityFilterForm(FilterForm):
    submitted_from = forms.DateField(required=False, label="Submitted from")
    submitted_to = forms.DateField(required=False, label="to (inclusive)")
    model_version = ModelVersionFilterField(
        queryset=model_version_choices(), empty_label="Any model version"
    )
    project = ModelChoiceField(queryset=project_list(), required=False, empty_label="Every project")

    def clean(self) -> dict:
        data = super().clean()
        check_dates_in_order(data, "submitted_from", "submitted_to")
        return data
