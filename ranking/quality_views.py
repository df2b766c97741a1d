"""Admin pages about ranking quality (agreement between trainers)."""

from datetime import datetime, time, timedelta

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from accounts.roles import staff_required
from ranking import metrics
from ranking.selectors import model_version_choices, ranking_quality


class QualityFilterForm(forms.Form):
    submitted_from = forms.DateField(required=False, label="Submitted from")
    submitted_to = forms.DateField(required=False, label="to (inclusive)")
    model_version = forms.ModelChoiceField(
        queryset=model_version_choices(), required=False, empty_label="Any model version"
    )

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("submitted_from"), data.get("submitted_to")
        if start and end and start > end:
            raise forms.ValidationError("The start date is after the end date.")
        return data


def _start_of_day(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


@staff_required
def quality(request: HttpRequest) -> HttpResponse:
    form = QualityFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    start, end = filters.get("submitted_from"), filters.get("submitted_to")
    version = filters.get("model_version")
    report = ranking_quality(
        submitted_from=_start_of_day(start) if start else None,
        submitted_before=_start_of_day(end + timedelta(days=1)) if end else None,
        model_version_id=version.pk if version else None,
    )
    return render(
        request,
        "ranking/quality.html",
        {
            "form": form,
            "report": report,
            "overall_percent": _percent(report.overall.pairwise),
            "reference_percent": _percent(metrics.INSTRUCTGPT_AGREEMENT),
            "reference_spread_percent": _percent(metrics.INSTRUCTGPT_AGREEMENT_SPREAD),
        },
    )
