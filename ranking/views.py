from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import staff_required, trainer_required
from ranking.selectors import dataset_export_list, ranking_queue_summary


@trainer_required
def rank(request: HttpRequest) -> HttpResponse:
    return render(request, "ranking/rank.html", {"summary": ranking_queue_summary()})


@staff_required
def export_list(request: HttpRequest) -> HttpResponse:
    return render(request, "ranking/export_list.html", {"exports": dataset_export_list()[:100]})
