"""Admin pages about ranking quality (agreement between trainers)."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.roles import staff_required


@staff_required
def quality(request: HttpRequest) -> HttpResponse:
    return render(request, "ranking/quality.html", {})
