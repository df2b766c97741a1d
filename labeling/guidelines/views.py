"""The labeling guidelines: a page (admins edit it there), and the panel the writing and ranking
pages load, which asks once to read a new version. Every project has its own guidelines: the
pages take ``?project=<slug>`` (a form posts it as ``project``); without it, the default
project's. A trainer sees only the projects open to them (``projects_open_to``: not drafts, not
another group's); any other answers 404, and nothing is written for it."""

import re

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from accounts.roles import is_admin, staff_required, trainer_required
from config.forms import id_in_range
from config.htmx import HtmxHttpRequest
from labeling.guidelines import selectors, services
from labeling.guidelines.forms import GuidelineForm
from ranking.projects.models import Project
from ranking.projects.selectors import project_default, project_open_to, projects_open_to

PAGE = "labeling/guidelines/page.html"
SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


def _project(request: HtmxHttpRequest) -> Project:
    """The project named by ``project`` (query or form); 404 when the user may not see it.
    Without it, the default project, or when that is not open to the user the first project
    that is (by name); 404 when none is."""
    slug = request.GET.get("project") or request.POST.get("project")
    if not slug:
        default = project_default()
        open_to_user = projects_open_to(user=request.user)
        project = open_to_user.filter(pk=default.pk).first() or open_to_user.first()
        if project is None:
            raise Http404("No project is open to you.")
        return project
    # Not a slug (NUL, spaces, ...): no such project, without asking the database.
    project = project_open_to(user=request.user, slug=slug) if SLUG.fullmatch(slug) else None
    if project is None:
        raise Http404("No such project.")
    return project


def _to_page(project: Project) -> HttpResponse:
    return redirect(f"{reverse('labeling:guidelines')}?{urlencode({'project': project.slug})}")


def _panel(
    request: HtmxHttpRequest, project: Project, *, refused: str = "", status: int = 200
) -> HttpResponse:
    current = selectors.guideline_version_current(project_id=project.pk)
    context = {
        "project": project,
        "current": current,
        "unread": not selectors.guideline_has_read(user=request.user, version=current),
        "refused": refused,
    }
    return render(request, f"{PAGE}#guidelines-panel", context, status=status)


def _page_context(request: HtmxHttpRequest, project: Project) -> dict:
    current = selectors.guideline_version_current(project_id=project.pk)
    return {
        "project": project,
        "current": current,
        "shown": current,
        "versions": selectors.guideline_version_list(project_id=project.pk)[:100],
        "unread": not selectors.guideline_has_read(user=request.user, version=current),
        "projects": projects_open_to(user=request.user)[:50],
    }


@trainer_required
def guidelines(request: HtmxHttpRequest) -> HttpResponse:
    project = _project(request)
    context = _page_context(request, project)
    if request.GET.get("version"):
        number = id_in_range(request.GET["version"])
        current = context["current"]
        # The current version may be version 1 before anything saved it: shown, not saved.
        context["shown"] = (
            current
            if number == current.number
            else number and selectors.guideline_version_get(number=number, project_id=project.pk)
        )
        if context["shown"] is None:
            raise Http404("No such guideline version.")
    if is_admin(request.user):
        context["form"] = GuidelineForm(initial={"text": context["current"].text})
    return render(request, PAGE, context)


@staff_required
@require_POST
def guidelines_edit(request: HtmxHttpRequest) -> HttpResponse:
    project = _project(request)
    form = GuidelineForm(request.POST)
    version = None
    if form.is_valid():
        try:
            version = services.guideline_version_create(
                author=request.user,
                text=form.cleaned_data["text"],
                change_note=form.cleaned_data["change_note"],
                project_id=project.pk,
            )
        except ValidationError as error:
            form.add_error(None, error)
    if version is None:
        # The edited text comes back with the reason; nothing typed is lost.
        context = {**_page_context(request, project), "form": form}
        return render(request, PAGE, context, status=422)
    messages.success(
        request,
        f"Saved as version {version.number} of {project.name}'s guidelines: "
        "its trainers are asked to read it.",
    )
    return _to_page(project)


@trainer_required
def guidelines_panel(request: HtmxHttpRequest) -> HttpResponse:
    project = _project(request)
    if not request.htmx:
        return _to_page(project)
    return _panel(request, project)


@trainer_required
@require_POST
def guidelines_acknowledge(request: HtmxHttpRequest, number: int) -> HttpResponse:
    project = _project(request)
    version = selectors.guideline_version_get(number=number, project_id=project.pk)
    if version is None and number == 1:
        # Version 1 (the defaults) is shown before it is saved; reading it saves it.
        version = services.guideline_version_ensure_current(project_id=project.pk)
    if version is None:
        raise Http404("No such guideline version.")
    try:
        services.guideline_acknowledge(user=request.user, version=version)
    except ValidationError as error:
        # An older version than the current one: the current one is shown to read instead.
        refused = " ".join(error.messages)
        if request.htmx:
            return _panel(request, project, refused=refused, status=409)
        context = {**_page_context(request, project), "refused": refused}
        return render(request, PAGE, context, status=409)
    if request.htmx:
        return _panel(request, project)
    messages.success(request, f"Thanks: guidelines version {number} marked as read.")
    return _to_page(project)
