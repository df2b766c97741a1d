"""Generation through a real worker process, a Redis broker and PostgreSQL."""

from pathlib import Path

import pytest

from config.celery import app
from sampler.generation import services
from sampler.generation.models import GenerationJob, Sample
from sampler.jobs.services import RUN_TASK
from sampler.registry.models import ModelVersion
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _finished(job_id: int) -> GenerationJob | None:
    job = GenerationJob.objects.get(pk=job_id)
    return job if job.is_finished else None


def test_job_goes_through_a_real_worker_and_comes_back_with_n_samples(
    celery_worker, policy, trainer
):
    request = {
        "messages": [{"role": "user", "content": "hi! what did you do today?"}],
        "n": 4,
        "params": {"max_new_tokens": 16, "temperature": 0.9},
        "seed": 7,
        "requested_by": trainer,
    }
    job = services.generation_job_create(**request)
    done = wait_until(lambda: _finished(job.pk))
    assert done.status == GenerationJob.Status.SUCCEEDED, done.error
    assert done.worker  # the worker recorded itself
    samples = list(done.samples.order_by("index"))
    assert len(samples) == 4
    assert all(s.token_count >= 1 and s.finish_reason in {"end_of_turn", "length"} for s in samples)
    assert done.model_version == policy and done.seed == 7
    assert done.params["temperature"] == 0.9

    # Same seed, params and model in this (test) process give the same texts as the worker.
    again = services.generation_job_create(**request, queue=False)
    again = services.generation_job_run_inline(job_id=again.pk)
    assert [s.text for s in again.samples.order_by("index")] == [s.text for s in samples]


def test_a_task_delivered_twice_stores_its_samples_once(celery_worker, policy, trainer):
    job = services.generation_job_create(
        messages=[{"role": "user", "content": "hello"}],
        n=3,
        params={"max_new_tokens": 8},
        requested_by=trainer,
        queue=False,
    )
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="once", queue="generation")
    for _ in range(2):
        app.send_task(RUN_TASK, args=("generation", job.pk, "once"), queue="generation")
    # A job published after both copies, on the same queue of a one-process worker: once it is
    # done, so is the second copy.
    sentinel = services.generation_job_create(
        messages=[{"role": "user", "content": "and now?"}],
        n=1,
        params={"max_new_tokens": 4},
        purpose=GenerationJob.Purpose.RANKING,
        requested_by=trainer,
    )
    wait_until(lambda: _finished(job.pk) and _finished(sentinel.pk))
    assert Sample.objects.filter(job_id=job.pk).count() == 3
    done = GenerationJob.objects.get(pk=job.pk)
    assert done.status == GenerationJob.Status.SUCCEEDED and done.attempts == 1


def test_a_job_that_breaks_on_the_worker_is_failed_not_stuck(celery_worker, trainer, db):
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
    redelivered to the fresh pool process, which sees the job's process gone and takes it over:
    the job still ends with n samples, stored once."""
    import os
    import signal

    import psutil

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
