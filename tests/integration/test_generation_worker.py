"""Generation through a real worker process, a Redis broker and PostgreSQL."""

from pathlib import Path

import pytest

from sampler import services
from sampler.models import GenerationJob, Sample
from sampler.tasks import run_generation_job
from tests.conftest import celery_worker_idle, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(job_id: int) -> GenerationJob | None:
    job = GenerationJob.objects.get(pk=job_id)
    return job if job.is_finished else None


def test_job_goes_through_a_real_worker_and_comes_back_with_n_samples(
    celery_worker, policy, trainer
):
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hi! what did you do today?"}],
        n=4,
        params={"max_new_tokens": 16, "temperature": 0.9},
        seed=7,
        requested_by=trainer,
    )
    done = wait_until(lambda: _finished(job.pk))
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert done.worker  # the worker recorded itself
    samples = list(done.samples.order_by("index"))
    assert len(samples) == 4
    assert all(s.token_count >= 1 and s.finish_reason in {"end_of_turn", "length"} for s in samples)
    assert done.model_version == policy and done.seed == 7
    assert done.params["temperature"] == 0.9

    # Same seed, params and model in this (test) process give the same texts as the worker.
    again = services.generation_job_create(
        messages=[{"role": "user", "content": "hi! what did you do today?"}],
        n=4,
        params={"max_new_tokens": 16, "temperature": 0.9},
        seed=7,
        requested_by=trainer,
        queue=False,
    )
    again = services.generation_job_run(job_id=again.pk)
    assert [s.text for s in again.samples.order_by("index")] == [s.text for s in samples]


def test_a_task_delivered_twice_stores_its_samples_once(celery_worker, policy, trainer):
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hello"}],
        n=3,
        params={"max_new_tokens": 8},
        requested_by=trainer,
        queue=False,
    )
    run_generation_job.delay(job.pk)
    run_generation_job.delay(job.pk)
    wait_until(lambda: _finished(job.pk))
    # Let the second delivery finish too before counting.
    wait_until(lambda: GenerationJob.objects.get(pk=job.pk).attempts >= 1)
    wait_until(celery_worker_idle, what="the worker idle with its queues empty")
    assert Sample.objects.filter(job_id=job.pk).count() == 3
    assert GenerationJob.objects.get(pk=job.pk).status == GenerationJob.Status.SUCCEEDED


def test_a_job_that_breaks_on_the_worker_is_failed_not_stuck(celery_worker, trainer, db):
    from sampler.models import ModelVersion

    broken = ModelVersion.objects.create(name="gone", path="/nonexistent/model-dir")
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hello"}],
        n=2,
        requested_by=trainer,
        model_version=broken,
    )
    done = wait_until(lambda: _finished(job.pk))
    assert done.status == GenerationJob.Status.FAILED
    assert done.error and done.samples.count() == 0


def test_a_worker_killed_mid_job_gives_it_back_and_the_job_ends_with_its_samples_once(
    celery_worker, trainer, db
):
    """acks_late + reject_on_worker_lost: SIGKILL the pool process while it samples; the task is
    redelivered to the fresh pool process and the job still ends with n samples, stored once."""
    import os
    import signal

    import psutil

    from sampler.models import ModelVersion

    embedded = Path(__file__).resolve().parents[2] / "assets" / "models" / "tandem-chitchat-tiny"
    # The embedded model at a high temperature rarely ends a turn early: seconds of sampling,
    # a window wide enough to kill the process in.
    slow = ModelVersion.objects.create(name="embedded-for-kill", path=str(embedded))
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "tell me everything about your week"}],
        n=16,
        params={"max_new_tokens": 200, "temperature": 2.0, "top_p": 1.0},
        seed=3,
        requested_by=trainer,
        model_version=slow,
    )
    running = wait_until(
        lambda: GenerationJob.objects.filter(
            pk=job.pk, status=GenerationJob.Status.RUNNING
        ).exists(),
        interval=0.02,
    )
    assert running
    pool = psutil.Process(celery_worker.pid).children()
    assert len(pool) == 1
    os.kill(pool[0].pid, signal.SIGKILL)

    # Redelivered at once (a visibility timeout would be an hour), to the fresh pool process.
    done = wait_until(lambda: _finished(job.pk))
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert done.attempts == 2  # the killed run and the redelivered one
    assert sorted(done.samples.values_list("index", flat=True)) == list(range(16))
    new_pool = psutil.Process(celery_worker.pid).children()
    assert new_pool and new_pool[0].pid != pool[0].pid
