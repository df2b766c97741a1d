from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET
from django_htmx.http import trigger_client_event

from accounts.roles import trainer_required
from config.forms import add_validation_errors, id_in_range
from config.htmx import HtmxHttpRequest
from sampler.generation import services
from sampler.generation.forms import GenerateForm
from sampler.generation.models import GenerationJob
from sampler.generation.selectors import generation_job_get, generation_job_list
from sampler.jobs.selectors import jobs_progress
from sampler.registry.selectors import model_version_active

# What the page's recent-jobs table listens for: a job it lists may have changed its status.
JOB_FINISHED_EVENT = "generation-job-finished"


@trainer_required
def generate(request: HtmxHttpRequest) -> HttpResponse:
    """A playground: one user turn in, ``n`` sampled assistant replies out."""
    active_policy = model_version_active()
    form = GenerateForm(
        request.POST or None,
        context_length=active_policy.context_length if active_policy is not None else None,
    )
    job = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = services.prompt_job_create(
                prompt=data["message"],
                choices=data,
                purpose=GenerationJob.Purpose.PLAYGROUND,
                requested_by=request.user,
            )
        except ValidationError as error:
            add_validation_errors(form, error)
        else:
            # The job's part says, as it polls, when the job queue has not taken it yet.
            if not request.htmx:
                return redirect("sampler:job-detail", job_id=job.pk)
    context = {
        "form": form,
        "job": job,
        "job_progress": jobs_progress(jobs=[job] if job else []),
        "active_policy": active_policy,
        **_recent_jobs(request, shown_id=job.pk if job else None),
    }
    # A refused form (a field, or the service's refusal) is a 422, as on every page; htmx
    # swaps it in all the same (``static/js/tandem.js``).
    status = 422 if form.errors else 200
    if request.htmx:
        return render(request, "sampler/generate.html#generate-result", context, status=status)
    return render(request, "sampler/generate.html", context, status=status)


def _recent_jobs(request: HttpRequest, *, shown_id: int | None) -> dict:
    """The jobs the table lists; whether one of them may change by itself: running, or queued
    where a live worker serves its queue (the table then polls itself, so a job that ends while
    another is polled above, or in another tab, does not stay shown as queued or running); the
    queues where its queued jobs wait with no worker; and the jobs the job queue has not taken
    yet (it was unreachable: the outbox sends them once it is back). Jobs waiting for no worker
    cannot change until one starts (a job waiting is never failed), so for them alone the table
    stops polling and says why, with a button to check again.

    ``shown_id``: the job the page shows above the table (the one just asked for), which says
    itself that it waits for no worker or for the job queue; the table's notes leave out that
    job and its queue, so the page says it once. The table asks for itself again with it
    (``?shown=``)."""
    recent_jobs = list(
        generation_job_list(user=request.user, purpose=GenerationJob.Purpose.PLAYGROUND, limit=10)
    )
    progress = jobs_progress(jobs=recent_jobs)
    shown = next((job for job in recent_jobs if job.pk == shown_id), None)
    said_above = jobs_progress(jobs=[shown]).queues_without_worker if shown else []
    note = progress._replace(
        queues_without_worker=[
            queue for queue in progress.queues_without_worker if queue not in said_above
        ],
        unpublished=[job for job in progress.unpublished if job is not shown],
    )
    return {
        "recent_jobs": recent_jobs,
        "recent_jobs_progress": progress,
        "recent_jobs_note": note,
        # What the table asks for again (its polls, its "Check again" button).
        "recent_jobs_url": reverse("sampler:generate-recent-jobs")
        + (f"?shown={shown.pk}" if shown else ""),
    }


@require_GET
@trainer_required
def generate_recent_jobs(request: HtmxHttpRequest) -> HttpResponse:
    """The page's recent jobs alone: what it asks for again when a job it polls finishes, every
    2 seconds while a job it lists may change by itself, and when its "Check again" button is
    pressed. Opened by itself (a bookmark, a typed address), the whole page. ``?shown=``: the
    job the page shows above the table (a value that is no job the table lists names none:
    it only keeps the table from saying again what that job says)."""
    if not request.htmx:
        return generate(request)
    context = _recent_jobs(request, shown_id=id_in_range(request.GET.get("shown")))
    return render(request, "sampler/generate.html#recent-jobs", context)


@trainer_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = generation_job_get(job_id=job_id, user=request.user)
    # Polled while it may change by itself; queued for no worker, it says so instead.
    context = {"job": job, "job_progress": jobs_progress(jobs=[job])}
    if request.htmx:
        response = render(request, "sampler/job.html#job-status", context)
        if job.is_finished:
            # The status poll's last answer: the playground's recent jobs show it too.
            trigger_client_event(response, JOB_FINISHED_EVENT)
        return response
    return render(request, "sampler/job.html", context)
