from django import forms

from config.forms import CheckboxField
from labeling.guidelines.selectors import guideline_number_choices
from ranking.exports import filters as export_filters
from ranking.exports.filter_form import ExportFilterForm
from ranking.exports.filters import PAIR_MODES, RED_TEAM_MODES, SPLITS, ExportFilters
from ranking.exports.models import DatasetExport


class ExportForm(ExportFilterForm):
    format = forms.ChoiceField(choices=DatasetExport.Format.choices)
    pair_mode = forms.ChoiceField(
        choices=[(mode, mode.replace("_", " ")) for mode in PAIR_MODES], initial="per_ranker"
    )
    split = forms.ChoiceField(choices=[(s, s) for s in SPLITS], initial="all")
    test_fraction = forms.FloatField(
        min_value=0,
        max_value=export_filters.MAX_TEST_FRACTION,
        initial=0.1,
        label=export_filters.HELD_OUT_FRACTION,
        error_messages=export_filters.TEST_FRACTION_BOUNDS,
    )
    split_seed = forms.IntegerField(
        min_value=0,
        max_value=export_filters.MAX_SPLIT_SEED,
        initial=0,
        error_messages=export_filters.SPLIT_SEED_BOUNDS,
    )
    # Ticked by default; the page's boxes post "on" (what a browser sends for a box drawn
    # without a value, as they were before: a page opened then still posts what is taken).
    pseudonymize = CheckboxField(value="on", initial=True, label="Pseudonymise trainers")
    red_team = forms.ChoiceField(
        choices=[(mode, mode) for mode in RED_TEAM_MODES], initial="include", required=False
    )
    # Version numbers (every project numbers its own): made under version N of its project's.
    guideline_versions = forms.TypedMultipleChoiceField(coerce=int, choices=(), required=False)
    compress = CheckboxField(value="on", initial=True, label="gzip")

    field_order = ["format"]  # then the filters, as the page shows them

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["guideline_versions"].choices = guideline_number_choices()

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            data["filters"] = ExportFilters(
                **self.filter_values(data),
                pair_mode=data["pair_mode"],
                split=data["split"],
                test_fraction=data["test_fraction"]
                if data.get("test_fraction") is not None
                else 0.1,
                split_seed=data["split_seed"] if data.get("split_seed") is not None else 0,
                pseudonymize=data.get("pseudonymize", False),
                red_team=data.get("red_team") or "include",
                guideline_versions=tuple(data.get("guideline_versions") or ()),
            )
            data["filters"].check_format(data["format"])
        except forms.ValidationError as error:
            raise forms.ValidationError(error.messages) from error
        return data
