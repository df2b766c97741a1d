"""A model server that is down, through a real worker: the job goes back to its queue (not
failed) and, once its attempts are spent, fails with the server named in the reason."""

import pytest

from sampler.generation import services
from sampler.generation.models import GenerationJob
from sampler.jobs.kinds import job_kind_named
from sampler.registry.services import model_version_register
from tests.conftest import free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_job_whose_server_is_down_is_requeued_then_failed_with_the_reason(celery_worker, trainer):
    port = free_port()  # nothing listens there
    version = model_version_register(
        name="server-down",
        path="",
        backend="openai",
        backend_options={
            "base_url": f"http://127.0.0.1:{port}/v1",
            "model": "policy",
            "max_retries": 0,
            "timeout": 5,
        },
        context_length=256,
    )
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hello?"}],
        n=2,
        seed=1,
        model_version=version,
        requested_by=trainer,
    )
    # Seen back in its queue after a failed attempt, with the reason, not failed.
    requeued = wait_until(
        lambda: GenerationJob.objects.filter(
            pk=job.pk, status=GenerationJob.Status.QUEUED, attempts__gte=1
        ).first(),
        interval=0.05,
        what="the job queued again after its first attempt",
    )
    assert f"127.0.0.1:{port}" in requeued.error
    done = wait_until(
        lambda: GenerationJob.objects.filter(pk=job.pk, status=GenerationJob.Status.FAILED).first(),
        what="the job failed after its attempts",
    )
    budget = job_kind_named("generation").max_attempts
    assert done.attempts == budget
    assert f"127.0.0.1:{port}" in done.error and f"Gave up after {budget} attempts" in done.error
    assert not done.samples.exists()
