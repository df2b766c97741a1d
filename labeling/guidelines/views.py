"""The labeling guidelines: a page (admins edit it there), and the panel the writing and ranking
pages load, which asks once to read a new version."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.roles import is_admin, staff_required, trainer_required
from config.htmx import HtmxHttpRequest
from labeling.guidelines import selectors, services
from labeling.guidelines.forms import GuidelineForm

PAGE = "labeling/guidelines/page.html"


def _panel(request: HtmxHttpRequest) -> HttpResponse:
    current = selectors.guideline_version_current()
    context = {
        "current": current,
        "unread": not selectors.guideline_has_read(user=request.user, version=current),
    }
    return render(request, f"{PAGE}#guidelines-panel", context)


@trainer_required
def guidelines(request: HtmxHttpRequest) -> HttpResponse:
    current = selectors.guideline_version_current()
    shown = current
    if request.GET.get("version"):
        try:
            shown = selectors.guideline_version_get(number=int(request.GET["version"]))
        except ValueError:
            shown = None
        if shown is None:
            raise Http404("No such guideline version.")
    context = {
        "current": current,
        "shown": shown,
        "versions": selectors.guideline_version_list()[:100],
        "unread": not selectors.guideline_has_read(user=request.user, version=current),
    }
    if is_admin(request.user):
        context["form"] = GuidelineForm(initial={"text": current.text})
    return render(request, PAGE, context)


@staff_required
@require_POST
def guidelines_edit(request: HtmxHttpRequest) -> HttpResponse:
    form = GuidelineForm(request.POST)
    version = None
    if form.is_valid():
        try:
            version = services.guideline_version_create(
                author=request.user,
                text=form.cleaned_data["text"],
                change_note=form.cleaned_data["change_note"],
            )
        except ValidationError as error:
            form.add_error(None, error)
    if version is None:
        # The edited text comes back with the reason; nothing typed is lost.
        current = selectors.guideline_version_current()
        context = {
            "current": current,
            "shown": current,
            "versions": selectors.guideline_version_list()[:100],
            "form": form,
        }
        return render(request, PAGE, context, status=422)
    messages.success(request, f"Saved as version {version.number}: trainers are asked to read it.")
    return redirect("labeling:guidelines")


@trainer_required
def guidelines_panel(request: HtmxHttpRequest) -> HttpResponse:
    if not request.htmx:
        return redirect("labeling:guidelines")
    return _panel(request)


@trainer_required
@require_POST
def guidelines_acknowledge(request: HtmxHttpRequest, number: int) -> HttpResponse:
    version = selectors.guideline_version_get(number=number)
    if version is None and number == 1:
        # Version 1 (the defaults) is shown before it is saved; reading it saves it.
        version = services.guideline_version_ensure_current()
    if version is None:
        raise Http404("No such guideline version.")
    services.guideline_acknowledge(user=request.user, version=version)
    if request.htmx:
        return _panel(request)
    messages.success(request, f"Thanks: guidelines version {number} marked as read.")
    return redirect("labeling:guidelines")
