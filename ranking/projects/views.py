"""Project pages: trainers choose where to rank; admins create projects and follow progress."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.roles import staff_required, trainer_required
from config.htmx import validation_messages
from config.text import deleted_meanwhile
from ranking.gold.selectors import (
    gold_tasks,
    qualifications_of_project,
    qualifications_of_trainer,
)
from ranking.gold.services import gold_task_create
from ranking.projects import services
from ranking.projects.forms import (
    GoldTaskForm,
    ProjectChoiceForm,
    ProjectForm,
    chosen_policies,
    policy_formset,
)
from ranking.projects.models import Project
from ranking.projects.selectors import (
    CHOSEN_PROJECT_SESSION_KEY,
    project_for_trainer,
    project_list,
    project_progress,
    projects_for_trainer,
)
from ranking.quality.selectors import trust_of_trainer
from ranking.rank.models import RankingTask


@trainer_required
@require_http_methods(["GET"])
def project_picker(request: HttpRequest) -> HttpResponse:
    """The active projects the trainer may rank in, and the one chosen now."""
    projects = projects_for_trainer(trainer=request.user)
    qualifications = qualifications_of_trainer(trainer=request.user)
    return render(
        request,
        "ranking/projects/picker.html",
        {
            "rows": [
                (
                    project_progress(project=project),
                    qualifications.get(project.pk),
                    trust_of_trainer(trainer_id=request.user.pk, project_id=project.pk),
                )
                for project in projects
            ],
            "chosen": request.session.get(CHOSEN_PROJECT_SESSION_KEY, ""),
        },
    )


@trainer_required
@require_POST
def project_choose(request: HttpRequest) -> HttpResponse:
    form = ProjectChoiceForm(request.POST)
    slug = form.cleaned_data["project"] if form.is_valid() else None
    project = project_for_trainer(trainer=request.user, slug=slug) if slug else None
    if slug is None or (slug and project is None):
        raise Http404("No such project open to you.")
    # Kept as the project spells it (one typed in another case names it too).
    request.session[CHOSEN_PROJECT_SESSION_KEY] = project.slug if project else ""
    return redirect("ranking:rank")


@staff_required
@require_http_methods(["GET", "POST"])
def project_manage(request: HttpRequest) -> HttpResponse:
    """Every project with its progress, and a form for a new one."""
    form = ProjectForm(request.POST or None)
    policies = policy_formset(request.POST or None)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid() and policies.is_valid():
        try:
            project = services.project_create(
                created_by=request.user, policies=chosen_policies(policies), **form.cleaned_data
            )
        except ValidationError as error:
            errors = validation_messages(error)
        else:
            messages.success(request, f"Project {project.name} created.")
            return redirect("ranking:project-detail", slug=project.slug)
    rows = [project_progress(project=project) for project in project_list()]
    status = 422 if request.method == "POST" else 200
    return render(
        request,
        "ranking/projects/manage.html",
        {"form": form, "policies": policies, "rows": rows, "errors": errors},
        status=status,
    )


@staff_required
@require_http_methods(["GET", "POST"])
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(Project, slug__iexact=slug)
    shown_name = project.name  # the form's check sets what was posted on ``project``
    form = ProjectForm(
        request.POST or None,
        instance=project,
        initial={"trainer_groups": project.trainer_groups.all()},
    )
    policies = policy_formset(request.POST or None, project=project)
    errors: list[str] = []
    if request.method == "POST" and form.is_valid() and policies.is_valid():
        fields = form.cleaned_data
        try:
            saved = services.project_update(
                project=project, policies=chosen_policies(policies), **fields
            )
        except ValidationError as error:
            errors = validation_messages(error)
        except Project.DoesNotExist:
            # Another admin deleted it while this page was open (the save waited for the delete
            # and found the row gone): nothing was written, nor the project made again.
            messages.warning(request, deleted_meanwhile("project", shown_name))
            return redirect("ranking:project-manage")
        else:
            messages.success(request, "Project saved.")
            # Its address as saved (the slug may have been changed, and is looked up in any
            # letter case).
            return redirect("ranking:project-detail", slug=saved.slug)
    return render(
        request,
        "ranking/projects/detail.html",
        {
            "project": project,
            "form": form,
            "policies": policies,
            "errors": errors,
            "progress": project_progress(project=project),
            "gold_form": GoldTaskForm(),
            "gold_tasks": gold_tasks(project=project),
            "qualifications": qualifications_of_project(project=project),
        },
        status=422 if request.method == "POST" else 200,
    )


@staff_required
@require_POST
def project_gold_create(request: HttpRequest, slug: str) -> HttpResponse:
    """Copy one of the project's tasks as gold (its agreed order, or the order written); back
    to the project's page under its slug as stored (``slug`` names it in any letter case)."""
    project = get_object_or_404(Project, slug__iexact=slug)
    form = GoldTaskForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            messages.error(request, f"{field}: {' '.join(errors)}")
        return redirect("ranking:project-detail", slug=project.slug)
    # A task id typed wrong is said on the page, as the form's other errors are, not a 404.
    task_id = form.cleaned_data["task_id"]
    task = RankingTask.objects.filter(pk=task_id, project=project).first()
    if task is None:
        messages.error(request, f"No task {task_id} in this project.")
        return redirect("ranking:project-detail", slug=project.slug)
    if task.gold_ordering is not None:
        copy_of = f" (a copy of task {task.gold_of_id})" if task.gold_of_id else ""
        messages.error(request, f"Task {task_id} is a gold task{copy_of}: make gold of a real one.")
        return redirect("ranking:project-detail", slug=project.slug)
    try:
        gold = gold_task_create(task=task, ordering=form.cleaned_data["ordering"])
    except ValidationError as error:
        for text in validation_messages(error):
            messages.error(request, text)
    else:
        messages.success(request, f"Gold task {gold.pk} made from task {task.pk}.")
    return redirect("ranking:project-detail", slug=project.slug)
