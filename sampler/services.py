# Merge shim: re-exports for code outside sampler; the lead removes it after the merge.
from sampler.generation.models import GenerationJob
from sampler.generation.services import generation_job_create
from sampler.jobs.services import job_execute
from sampler.registry.services import (
    model_version_ensure_default,
    model_version_promote,
    model_version_register,
)


def generation_job_run(*, job_id: int, worker: str = "") -> GenerationJob:
    job_execute(kind_name="generation", job_id=job_id, token=None, worker=worker)
    return GenerationJob.objects.get(pk=job_id)


__all__ = [
    "generation_job_create",
    "generation_job_run",
    "model_version_ensure_default",
    "model_version_promote",
    "model_version_register",
]
