"""Admin pages about ranking quality (agreement between trainers)."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import staff_required
from config.querysets import local_day_bounds
from ranking.projects.selectors import project_list
from ranking.quality import metrics
from ranking.quality.forms import QualityFilterForm
from ranking.quality.selectors import (
    krippendorff_alpha_by_project,
    quality_rankings,
    ranking_quality,
    task_detail,
)


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100


@staff_required
def quality(request: HttpRequest) -> HttpResponse:
    form = QualityFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        # No figures for filters that select nothing definite: all the data would pass for them.
        return render(request, "ranking/quality/page.html", {"form": form}, status=422)
    filters = form.cleaned_data if form.is_bound else {}
    start, end = filters.get("submitted_from"), filters.get("submitted_to")
    version = filters.get("model_version")
    bounds = local_day_bounds(start, end)
    selection = {
        "submitted_from": bounds.get("gte"),
        "submitted_before": bounds.get("lt"),
        "model_version_id": version.pk if version else None,
        "project_id": filters["project"].pk if filters.get("project") else None,
    }
    # Alpha, as every number on the page, over the rankings the filters select.
    alphas = krippendorff_alpha_by_project(rankings=quality_rankings(**selection))
    report = ranking_quality(**selection)
    return render(
        request,
        "ranking/quality/page.html",
        {
            "form": form,
            "report": report,
            "alphas": [
                (project, alphas.get(project.pk))
                for project in project_list()
                if project.pk in alphas
            ],
            "overall_percent": _percent(report.overall.pairwise),
            "reference_percent": _percent(metrics.INSTRUCTGPT_AGREEMENT),
            "reference_spread_percent": _percent(metrics.INSTRUCTGPT_AGREEMENT_SPREAD),
            "fast_seconds": settings.RANKING_FAST_SUBMIT_SECONDS,
            "outlier_percent": settings.RANKING_OUTLIER_PERCENT,
            "outlier_min": settings.RANKING_OUTLIER_MIN_RANKINGS,
        },
    )


@staff_required
def task(request: HttpRequest, task_id: int) -> HttpResponse:
    """A ranking task, read only: its conversation, replies and every ranking of them."""
    return render(request, "ranking/quality/task.html", {"detail": task_detail(task_id=task_id)})
