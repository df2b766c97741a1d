from django import forms

from config.forms import (
    CheckboxField,
    ModelVersionFilterField,
    MultilineCharField,
    PageForm,
    check_dates_in_order,
)
from labeling.feedback.models import Feedback
from labeling.feedback.selectors import FeedbackFilters
from labeling.feedback.services import MAX_COMMENT_CHARS
from sampler.models import ModelVersion


class RatingForm(forms.Form):
    rating = forms.ChoiceField(
        choices=[("", "No rating"), *Feedback.Rating.choices], required=False
    )


class ReportForm(forms.Form):
    categories = forms.MultipleChoiceField(
        choices=Feedback.Category.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    comment = MultilineCharField(required=False, max_length=MAX_COMMENT_CHARS)
    # The widget's checkbox posts "1" (labeling/feedback/target.html).
    filter_wrong = CheckboxField(value="1", label="The content filter was wrong")


class FeedbackFilterForm(PageForm):
    rating = forms.ChoiceField(
        choices=[("", "Any rating"), *Feedback.Rating.choices], required=False
    )
    category = forms.ChoiceField(
        choices=[("", "Any report"), *Feedback.Category.choices], required=False
    )
    filter_report = forms.ChoiceField(
        choices=[("", "Any"), *Feedback.FilterReport.choices], required=False
    )
    model_version = ModelVersionFilterField(
        queryset=ModelVersion.objects.order_by("name"), empty_label="Any model"
    )
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict:
        data = super().clean()
        check_dates_in_order(data, "date_from", "date_to")
        return data

    def filters(self) -> FeedbackFilters:
        data = self.cleaned_data
        return FeedbackFilters(
            rating=data["rating"],
            category=data["category"],
            filter_report=data["filter_report"],
            model_version_id=data["model_version"].pk if data["model_version"] else None,
            date_from=data["date_from"],
            date_to=data["date_to"],
        )
