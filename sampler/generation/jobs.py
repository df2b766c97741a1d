"""Generation jobs as a kind of job for the executor."""

from django.conf import settings

from sampler.generation.models import GenerationJob
from sampler.generation.services import generation_job_execute, generation_job_queue
from sampler.jobs.kinds import JobKind, job_kind_register

GENERATION = job_kind_register(
    JobKind(
        name="generation",
        model=GenerationJob,
        execute=generation_job_execute,
        queue=generation_job_queue,
        time_limit=settings.GENERATION_TIME_LIMIT,
    )
)
