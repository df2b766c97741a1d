"""The Training page for admins: model versions, launching runs, following them live."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from accounts.roles import staff_required
from config.forms import add_validation_errors
from config.htmx import HtmxHttpRequest, redirect_page
from config.uploads import UploadSizeLimit, upload_size_limit_install
from sampler.jobs.selectors import jobs_progress
from sampler.jobs.services import job_cancel_refusal
from sampler.registry.selectors import model_version_list
from sampler.runs import services as training_services
from sampler.runs.data_files import upload_read_limit
from sampler.runs.forms import TrainingRunForm
from sampler.runs.kinds import normalising_remedy_worded
from sampler.runs.models import TrainingRun
from sampler.runs.plots import run_charts
from sampler.runs.selectors import training_run_list

PAGE = "sampler/training.html"
RUN_PAGE = "sampler/training_run.html"
LOG_TAIL_CHARS = 6000


def _runs() -> dict:
    """The runs the table lists, and whether one of them may change by itself (the table polls
    while one does; queued ones waiting for no worker stop it, and it says so)."""
    runs = list(training_run_list()[:50])
    return {"runs": runs, "runs_progress": jobs_progress(jobs=runs)}


def _page(request: HttpRequest, form: TrainingRunForm, *, status: int = 200) -> HttpResponse:
    context = {"form": form, "versions": model_version_list()[:100], **_runs()}
    return render(request, PAGE, context, status=status)


@staff_required
def training(request: HttpRequest) -> HttpResponse:
    return _page(request, TrainingRunForm())


@staff_required
def training_runs(request: HtmxHttpRequest) -> HttpResponse:
    """The runs table alone: what the page polls while a run may change by itself, and what
    its "Check again" button asks for. Opened by itself (a bookmark, a typed address), the
    whole Training page."""
    if not request.htmx:
        return _page(request, TrainingRunForm())
    return render(request, f"{PAGE}#run-table", _runs())


# The upload's size limit must be installed before anything reads the request body, and the
# CSRF check reads it; so CSRF is checked inside, after the limit is in place (Django's
# documented pattern for per-view upload handlers).
@staff_required
@require_POST
@csrf_exempt
def training_run_start(request: HttpRequest) -> HttpResponse:
    size_limit = upload_size_limit_install(request, limit=settings.TRAINING_UPLOAD_MAX_BYTES)
    return csrf_protect(_training_run_start)(request, size_limit)


def _training_run_start(request: HttpRequest, size_limit: UploadSizeLimit) -> HttpResponse:
    form = TrainingRunForm(request.POST, request.FILES, upload_too_large=size_limit.exceeded)
    if not form.is_valid():
        return _page(request, form, status=422)
    data = form.cleaned_data
    data_path = read_limit = None
    if data["source"] == "export":
        data_path = data["export"].file_path
    elif data["source"] == "upload":
        data_path = training_services.training_data_store(uploaded=data["upload"])
        read_limit = upload_read_limit(data_path)
    try:
        run = training_services.training_run_create(
            kind=data["kind"],
            config=data["config"],
            base_version=data["base_version"],
            filters=data.get("filters") if data_path is None else None,
            data_path=data_path,
            output_name=data["output_name"],
            started_by=request.user,
            allowed_data_roots=training_services.training_data_roots(),
            data_read_limit=read_limit,
            **data["kind_inputs"],
        )
    except ValidationError as error:
        if data["source"] == "upload":
            training_services.training_data_discard(path=data_path)  # no run will read it
        box = form.fields["normalize_to_demonstrations"].label
        normalising_remedy_worded(
            error, remedy=f"choose demonstrations to normalise it on, or untick “{box}”"
        )
        add_validation_errors(form, error)
        return _page(request, form, status=422)
    # The run page says it is queued (or not sent yet), in the part it polls: gone once it runs.
    url = reverse("sampler:training-run", kwargs={"run_id": run.pk})
    return redirect_page(request, url)


def _run_context(run: TrainingRun) -> dict:
    log = run.log
    return {
        "run": run,
        "output_version": run.output_versions.first(),
        "charts": run_charts(run),
        "log_tail": log[-LOG_TAIL_CHARS:],
        "log_truncated": len(log) > LOG_TAIL_CHARS,
        "percent": round(run.progress * 100),
        # Polled while the run may change by itself; queued for no worker, it says so instead.
        "run_progress": jobs_progress(jobs=[run]),
    }


@staff_required
def training_run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(
        TrainingRun.objects.select_related("base_version", "started_by"), pk=run_id
    )
    if request.htmx:
        return render(request, f"{RUN_PAGE}#run-status", _run_context(run))
    return render(request, RUN_PAGE, _run_context(run))


@staff_required
@require_POST
def training_run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    run = training_services.training_run_cancel(run=run)
    if refusal := job_cancel_refusal(job=run):
        messages.error(request, refusal)
    else:
        messages.info(request, f"Run {run.pk} is {run.get_status_display().lower()}.")
    return redirect("sampler:training-run", run_id=run.pk)
