from django import forms

from config.forms import ModelChoiceField
from ranking.projects.selectors import project_list
from ranking.quality.selectors import model_version_choices


class QualityFilterForm(forms.Form):
    submitted_from = forms.DateField(required=False, label="Submitted from")
    submitted_to = forms.DateField(required=False, label="to (inclusive)")
    model_version = ModelChoiceField(
        queryset=model_version_choices(), required=False, empty_label="Any model version"
    )
    project = ModelChoiceField(queryset=project_list(), required=False, empty_label="Every project")

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("submitted_from"), data.get("submitted_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return data
