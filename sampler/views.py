from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.roles import staff_required, trainer_required
from sampler import services
from sampler.forms import GenerateForm
from sampler.models import ModelVersion
from sampler.selectors import (
    generation_job_get,
    generation_job_list,
    model_version_active,
    model_version_list,
    training_run_list,
)


@trainer_required
def generate(request: HttpRequest) -> HttpResponse:
    """A playground: one user turn in, ``n`` sampled assistant replies out."""
    form = GenerateForm(request.POST or None)
    job = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = services.generation_job_create(
                messages=[{"role": "user", "content": data["message"]}],
                n=data["n"],
                params={
                    "temperature": data["temperature"],
                    "top_p": data["top_p"],
                    "max_new_tokens": data["max_new_tokens"],
                },
                seed=data["seed"],
                requested_by=request.user,
            )
        except ValidationError as error:
            for field, field_errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, field_errors)
        else:
            if not request.htmx:
                return redirect("sampler:job-detail", job_id=job.pk)
    context = {
        "form": form,
        "job": job,
        "recent_jobs": generation_job_list(user=request.user, limit=10),
        "active_policy": model_version_active(),
    }
    if request.htmx:
        return render(request, "sampler/generate.html#generate-result", context)
    return render(request, "sampler/generate.html", context)


@trainer_required
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    job = generation_job_get(job_id=job_id, user=request.user)
    if request.htmx:
        return render(request, "sampler/job.html#job-status", {"job": job})
    return render(request, "sampler/job.html", {"job": job})


@staff_required
def training(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "sampler/training.html",
        {"runs": training_run_list()[:50], "versions": model_version_list()[:100]},
    )


@staff_required
@require_POST
def version_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    version = get_object_or_404(ModelVersion, pk=version_id)
    services.model_version_promote(version=version)
    messages.success(request, f"{version.name} is now the active {version.get_kind_display()}.")
    if request.htmx:
        return HttpResponseClientRedirect(request.build_absolute_uri("/training/"))
    return redirect("sampler:training")
