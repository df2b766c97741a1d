from django import forms
from django.contrib.auth import get_user_model

from labeling.models import GuidelineVersion
from ranking.exports.filters import FLAG_NAMES, PAIR_MODES, RED_TEAM_MODES, SPLITS, ExportFilters
from ranking.exports.models import DatasetExport
from sampler.models import ModelVersion


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=DatasetExport.Format.choices)
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    model_versions = forms.ModelMultipleChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY), required=False
    )
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1)
    exclude_flags = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in FLAG_NAMES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    exclude_trainers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"), required=False
    )
    pair_mode = forms.ChoiceField(
        choices=[(mode, mode.replace("_", " ")) for mode in PAIR_MODES], initial="per_ranker"
    )
    split = forms.ChoiceField(choices=[(s, s) for s in SPLITS], initial="all")
    test_fraction = forms.FloatField(min_value=0, max_value=0.99, initial=0.1)
    split_seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
    pseudonymize = forms.BooleanField(required=False, initial=True)
    red_team = forms.ChoiceField(
        choices=[(mode, mode) for mode in RED_TEAM_MODES], initial="include", required=False
    )
    guideline_versions = forms.ModelMultipleChoiceField(
        queryset=GuidelineVersion.objects.order_by("-number"),
        to_field_name="number",
        required=False,
    )
    compress = forms.BooleanField(required=False, initial=True, label="gzip")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["filters"] = ExportFilters(
                date_from=data.get("date_from"),
                date_to=data.get("date_to"),
                model_version_ids=tuple(v.pk for v in data.get("model_versions") or ()),
                min_agreement=data.get("min_agreement"),
                exclude_flags=tuple(data.get("exclude_flags") or ()),
                exclude_trainer_ids=tuple(u.pk for u in data.get("exclude_trainers") or ()),
                pair_mode=data["pair_mode"],
                split=data["split"],
                test_fraction=data["test_fraction"]
                if data.get("test_fraction") is not None
                else 0.1,
                split_seed=data["split_seed"] if data.get("split_seed") is not None else 0,
                pseudonymize=data.get("pseudonymize", False),
                red_team=data.get("red_team") or "include",
                guideline_versions=tuple(v.number for v in data.get("guideline_versions") or ()),
            )
        except forms.ValidationError as error:
            raise forms.ValidationError(error.messages) from error
        return data
