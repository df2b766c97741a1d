"""The run executor's lifecycle, on generation jobs: publish, claim, heartbeat, cancel, retry,
the outbox and the sweeper. The broker here (the ``broker`` fixture) records what is sent (the
integration tier runs the same paths against a real Redis and worker)."""

import os
import signal
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from billiard.common import clear_terminate_handler_fired
from django.core.exceptions import ValidationError
from django.utils import timezone

from config.celery import Queue, app
from sampler.generation import services as generation_services
from sampler.generation.models import GenerationJob
from sampler.generation.services import generation_job_create
from sampler.jobs import services, tasks
from sampler.jobs.kinds import JobContext, job_kind_named
from sampler.jobs.selectors import job_queue_position, jobs_by_state, queue_depths
from tests.conftest import settings_refusal

PROMPT = [{"role": "user", "content": "hi! how was your weekend?"}]


def _job(trainer, *, purpose=GenerationJob.Purpose.SUGGESTION, queue=True):
    return generation_job_create(
        messages=PROMPT,
        n=2,
        params={"max_new_tokens": 8},
        seed=7,
        purpose=purpose,
        requested_by=trainer,
        queue=queue,
    )


def test_a_job_is_published_after_commit_to_its_kinds_queue_with_a_fresh_token(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        suggestion = _job(trainer)
        bulk = _job(trainer, purpose=GenerationJob.Purpose.RANKING)
        assert broker.sent == []  # nothing leaves before the commit
    suggestion.refresh_from_db()
    bulk.refresh_from_db()
    assert [message["queue"] for message in broker.sent] == [
        Queue.INTERACTIVE.value,
        Queue.GENERATION.value,
    ]
    assert broker.sent[0]["name"] == services.RUN_TASK
    assert broker.sent[0]["args"] == ("generation", suggestion.pk, suggestion.publish_token)
    assert suggestion.published_at is not None and suggestion.publish_count == 1
    assert suggestion.publish_token != bulk.publish_token
    # Generation jobs carry their time limit to the worker.
    assert broker.sent[0]["soft_time_limit"] == job_kind_named("generation").time_limit


def test_broker_down_keeps_the_job_queued_unpublished_and_the_outbox_sends_it_later(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    broker.down = True
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(trainer)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is None
    assert services.jobs_tick().republished == 0  # within the grace period: no double send
    broker.down = False
    later = timezone.now() + timedelta(seconds=60)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.jobs_tick(now=later)
    assert report.republished == 1
    job.refresh_from_db()
    assert broker.sent[-1]["args"] == ("generation", job.pk, job.publish_token)
    assert job.published_at is not None


def test_the_outbox_leaves_a_waiting_job_alone_then_republishes_with_backoff(
    policy, trainer, broker, django_capture_on_commit_callbacks, settings
):
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(trainer)
    job.refresh_from_db()
    first_token, place = job.publish_token, job.queued_at
    soon = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER - 1)
    assert services.jobs_tick(now=soon).republished == 0
    due = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.jobs_tick(now=due).republished == 1
    job.refresh_from_db()
    assert job.publish_token != first_token and job.publish_count == 2
    assert job.queued_at == place  # published again, it keeps its place in the queue
    # The second wait is twice as long before the next copy.
    not_yet = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER + 1)
    assert services.jobs_tick(now=not_yet).republished == 0
    # Never failed while it waits, however long.
    much_later = timezone.now() + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.jobs_tick(now=much_later)
    job.refresh_from_db()
    assert report.failed == 0 and job.status == GenerationJob.Status.QUEUED


def test_a_job_the_outbox_sends_again_reads_as_published_while_it_is_sent(
    policy, trainer, broker, django_capture_on_commit_callbacks, settings
):
    """Sending a waiting job again cleared its publication first: from the tick's commit until
    the broker took the copy, every page polling it said the job queue was unreachable (and a
    slow broker made that seconds). The row keeps its publication until the copy is sent; a
    copy the broker refuses leaves it unpublished, for the next tick to send."""
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(trainer)
    job.refresh_from_db()
    seen_while_sent = []
    send = broker.send_task

    def send_task(name, args=(), queue=None, **options):
        seen_while_sent.append(GenerationJob.objects.get(pk=job.pk).published_at)
        send(name, args=args, queue=queue, **options)

    with mock.patch.object(app, "send_task", send_task):
        due = job.published_at + timedelta(seconds=settings.JOB_REPUBLISH_AFTER + 1)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.jobs_tick(now=due).republished == 1
        assert seen_while_sent == [job.published_at]
        job.refresh_from_db()
        assert job.published_at > seen_while_sent[0]
        broker.down = True
        later = job.published_at + timedelta(days=1)
        with django_capture_on_commit_callbacks(execute=True):
            assert services.jobs_tick(now=later).republished == 1
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED and job.published_at is None


def test_the_outbox_reaches_a_lost_publication_behind_more_waiting_jobs_than_one_tick_takes(
    policy, trainer, broker, django_capture_on_commit_callbacks, settings
):
    settings.JOB_TICK_BATCH = 2
    now = timezone.now()
    waiting = [_job(trainer, queue=False) for _ in range(2)]
    # Published three times already, the last 5 minutes ago: not due again for a while.
    GenerationJob.objects.filter(pk__in=[job.pk for job in waiting]).update(
        queue="interactive",
        queued_at=now - timedelta(hours=1),
        published_at=now - timedelta(minutes=5),
        publish_count=3,
    )
    lost = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=lost.pk).update(
        queue="interactive", queued_at=now - timedelta(minutes=1), published_at=None
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = services.jobs_tick(now=now)
    assert report.republished == 1
    assert [message["args"][1] for message in broker.sent] == [lost.pk]


def test_a_stale_message_is_dropped_and_the_current_one_runs(policy, trainer, broker):
    job = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="new", queue="interactive")
    assert services.job_execute(kind_name="generation", job_id=job.pk, token="old") is None
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED and job.attempts == 0
    done = services.job_execute(kind_name="generation", job_id=job.pk, token="new")
    assert done.status == GenerationJob.Status.SUCCEEDED and done.samples.count() == 2
    assert done.attempts == 1 and done.started_at and done.finished_at and done.worker


def test_a_running_job_with_a_fresh_heartbeat_is_not_taken_over_but_a_stale_one_is(
    policy, trainer, settings
):
    job = _job(trainer, queue=False)
    now = timezone.now()
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", publish_token="t", queue="interactive", heartbeat_at=now, attempts=1
    )
    kind = job_kind_named("generation")
    assert services.job_claim(kind=kind, job_id=job.pk, token="t", worker="other") is None
    stale = now - timedelta(seconds=settings.JOB_STALE_AFTER + 1)
    GenerationJob.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    claimed = services.job_claim(kind=kind, job_id=job.pk, token="t", worker="other")
    assert claimed is not None and claimed.attempts == 2 and claimed.worker == "other"


def test_the_sweeper_queues_again_a_job_whose_worker_stopped_then_fails_it_past_its_budget(
    policy, trainer, broker, django_capture_on_commit_callbacks, settings
):
    job = _job(trainer, queue=False)
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", publish_token="t", queue="interactive", heartbeat_at=stale, attempts=1
    )
    with django_capture_on_commit_callbacks(execute=True):
        report = services.jobs_tick()
    job.refresh_from_db()
    assert report.requeued == 1 and job.status == GenerationJob.Status.QUEUED
    assert job.publish_token != "t" and "stopped responding" in job.error
    assert broker.sent[-1]["args"] == ("generation", job.pk, job.publish_token)
    # The dead worker's old message, redelivered late, does nothing.
    assert services.job_execute(kind_name="generation", job_id=job.pk, token="t") is None
    GenerationJob.objects.filter(pk=job.pk).update(
        status="running", heartbeat_at=stale, attempts=settings.JOB_MAX_ATTEMPTS
    )
    report = services.jobs_tick()
    job.refresh_from_db()
    assert report.failed == 1 and job.status == GenerationJob.Status.FAILED
    assert "Gave up after" in job.error


def test_cancel_stops_a_queued_job_and_retry_runs_it_again(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    job = _job(trainer, queue=False)
    services.job_cancel(job=job)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED and job.finished_at
    with django_capture_on_commit_callbacks(execute=True):
        publication = services.job_retry(job=job)
    job.refresh_from_db()
    assert publication.sent and not publication.failed
    assert job.status == GenerationJob.Status.QUEUED and job.attempts == 0
    assert job.finished_at is None and job.queue == Queue.INTERACTIVE.value
    done = services.job_execute(kind_name="generation", job_id=job.pk, token=job.publish_token)
    assert done.status == GenerationJob.Status.SUCCEEDED
    with pytest.raises(ValidationError, match="Only failed or cancelled"):
        services.job_retry(job=done)


def test_a_job_cancelled_while_it_runs_keeps_no_results(policy, trainer):
    job = _job(trainer, queue=False)
    kind = job_kind_named("generation")
    claimed = services.job_claim(kind=kind, job_id=job.pk, token=None, worker="w")
    context = services.JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="w")
    services.job_cancel(job=claimed)
    with pytest.raises(services.JobCancelled):
        context.heartbeat()
    with pytest.raises(services.JobCancelled):
        kind.execute(context)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.CANCELLED and job.samples.count() == 0


def test_queue_position_and_depths_count_waiting_jobs_per_queue(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first, second = _job(trainer), _job(trainer)
        _job(trainer, purpose=GenerationJob.Purpose.RANKING)
    first.refresh_from_db()
    second.refresh_from_db()
    assert job_queue_position(job=first) == 0 and job_queue_position(job=second) == 1
    assert queue_depths() == {"interactive": 2, "generation": 1, "training": 0, "default": 0}
    assert jobs_by_state()["sampler.generationjob"] == {"queued": 3}


def test_queue_depths_api_lists_every_queue_even_when_nothing_waits(
    db, admin_client_, trainer, broker, django_capture_on_commit_callbacks
):
    response = admin_client_.get("/api/jobs/queues/")
    assert response.status_code == 200
    assert response.json() == {queue.value: 0 for queue in Queue}
    assert set(response.json()) == {"interactive", "generation", "training", "default"}


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"JOB_HEARTBEAT_SECONDS": "30", "JOB_STALE_AFTER": "60"}, "3 x JOB_HEARTBEAT_SECONDS"),
        (
            {
                "JOB_STALE_AFTER": "4000",
                "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
                "CELERY_VISIBILITY_TIMEOUT": "3600",
            },
            "below CELERY_VISIBILITY_TIMEOUT",
        ),
        ({"JOB_REPUBLISH_AFTER": "5", "JOB_PUBLISH_GRACE": "10"}, "JOB_PUBLISH_GRACE"),
    ],
)
def test_contradictory_job_settings_are_refused_at_startup(environment, message, tmp_path):
    assert message in settings_refusal(environment, tmp_path)


@pytest.mark.parametrize("kind", ["generation", "ranking_preparation"])
def test_retry_job_says_a_missing_job_in_the_jobs_apis_words(admin_client_, kind):
    from django.core.management import CommandError, call_command

    said = admin_client_.get(f"/api/jobs/{kind}/999998/").json()["detail"]
    with pytest.raises(CommandError) as refused:
        call_command("retry_job", kind, "999999", "999998")
    assert str(refused.value) == f"{kind} 999998: {said}\n{kind} 999999: {said}"


def test_retry_job_says_an_unknown_kind_in_the_jobs_apis_words(admin_client_):
    """It said "No job kind named 'nope' is registered. Kinds: ..."."""
    from django.core.management import CommandError, call_command

    said = admin_client_.get("/api/jobs/nope/1/").json()["detail"]
    with pytest.raises(CommandError) as refused:
        call_command("retry_job", "nope", "1")
    assert str(refused.value) == said
    assert said.startswith("No kind of job named 'nope'. Kinds: attack_run, comparison, ")


def test_retry_job_command_queues_failed_jobs_again_and_refuses_the_rest(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    from django.core.management import CommandError, call_command

    failed, other = _job(trainer, queue=False), _job(trainer, queue=False)
    services.job_fail(job=failed, error="the GPU fell over")
    with django_capture_on_commit_callbacks(execute=True):
        call_command("retry_job", "generation", "--all-failed")
    failed.refresh_from_db()
    assert failed.status == GenerationJob.Status.QUEUED and failed.error == ""
    assert broker.sent[-1]["args"] == ("generation", failed.pk, failed.publish_token)
    with pytest.raises(CommandError, match="could not be retried"):
        call_command("retry_job", "generation", str(other.pk))
    with pytest.raises(CommandError, match="generation 999999: No generation job with that id"):
        call_command("retry_job", "generation", "999999")
    with pytest.raises(CommandError, match=f"generation {2**64}: No generation job with that id"):
        call_command("retry_job", "generation", str(2**64))
    with pytest.raises(CommandError, match="Kinds:"):
        call_command("retry_job", "nonsense", "1")
    # With no kind, --all-failed takes every kind's failed jobs, each under its own kind.
    services.job_fail(job=failed, error="again")
    ranking = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=ranking.pk).update(purpose=GenerationJob.Purpose.RANKING)
    services.job_fail(job=GenerationJob.objects.get(pk=ranking.pk), error="down")
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("retry_job", "--all-failed", stdout=out)
    assert f"generation {failed.pk}: queued again" in out.getvalue()
    assert f"ranking_preparation {ranking.pk}: queued again" in out.getvalue()
    assert f"generation {ranking.pk}" not in out.getvalue()
    with pytest.raises(CommandError, match="No generation job with that id"):
        call_command("retry_job", "generation", str(ranking.pk))
    with pytest.raises(CommandError, match="or --all-failed"):
        call_command("retry_job")


def test_a_batch_that_fails_hands_back_the_partners_it_did_not_finish(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    """``job_batch``: the partners it claims run under this worker; when the block raises, the
    ones it did not finish go back to their queue with a new message, their attempt not
    counted, and the ones it finished stay finished."""
    with django_capture_on_commit_callbacks(execute=True):
        lead, finished, unfinished = (_job(trainer) for _ in range(3))
    kind = job_kind_named("generation")
    claimed = services.job_claim(kind=kind, job_id=lead.pk, token=lead.publish_token, worker="w1")
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="w1")
    old_token = unfinished.publish_token
    sent_before = len(broker.sent)

    batch = services.job_batch(context=context, candidates=[lead, finished, unfinished])
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError, match="mid-batch"),
        batch as partners,
    ):
        assert [partner.job.pk for partner in partners] == [finished.pk, unfinished.pk]
        rows = GenerationJob.objects.filter(pk__in=[finished.pk, unfinished.pk])
        assert {(row.status, row.worker, row.attempts) for row in rows} == {("running", "w1", 1)}
        assert partners[0].succeed()
        raise RuntimeError("the model crashed mid-batch")

    finished.refresh_from_db()
    unfinished.refresh_from_db()
    assert finished.status == GenerationJob.Status.SUCCEEDED
    assert unfinished.status == GenerationJob.Status.QUEUED and unfinished.attempts == 0
    assert unfinished.publish_token != old_token
    # One new message, for the row handed back, carrying its new token.
    assert [message["args"] for message in broker.sent[sent_before:]] == [
        ("generation", unfinished.pk, unfinished.publish_token)
    ]
    # The lead is not the batch's to hand back: it stays with its worker (the executor fails or
    # retries it).
    assert GenerationJob.objects.get(pk=lead.pk).status == GenerationJob.Status.RUNNING


def test_a_worker_whose_run_was_taken_over_after_a_stall_no_longer_holds_it(
    policy, trainer, settings
):
    # Worker A claims the job, then stalls (its heartbeat goes stale) but is still alive; the
    # broker hands the same message to worker B, which takes the run over.
    job = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="t", queue="interactive")
    kind = job_kind_named("generation")
    first = services.job_claim(kind=kind, job_id=job.pk, token="t", worker="host-a/1")
    stalled = JobContext(kind=kind, job=first, token=first.publish_token, worker="host-a/1")
    stale = timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 1)
    GenerationJob.objects.filter(pk=job.pk).update(heartbeat_at=stale)
    second = services.job_claim(kind=kind, job_id=job.pk, token="t", worker="host-b/2")
    assert second is not None and second.worker == "host-b/2"
    taker = JobContext(kind=kind, job=second, token=second.publish_token, worker="host-b/2")
    # A wakes up: the run is B's alone, so A can neither beat for it nor finish it.
    with pytest.raises(services.JobCancelled):
        stalled.heartbeat()
    assert stalled.succeed() is False
    taker.heartbeat()
    assert taker.succeed() is True


def test_a_partner_handed_back_by_a_failed_batch_keeps_its_place_in_the_queue(
    policy, trainer, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        lead, partner = _job(trainer), _job(trainer)
        later = _job(trainer)  # asked for after the partner
    partner.refresh_from_db()
    place = partner.queued_at
    kind = job_kind_named("generation")
    claimed = services.job_claim(kind=kind, job_id=lead.pk, token=lead.publish_token, worker="w1")
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="w1")
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        services.job_batch(context=context, candidates=[partner]),
    ):
        raise RuntimeError("the model crashed mid-batch")
    partner.refresh_from_db()
    later.refresh_from_db()
    # Its attempt is not counted, and neither is its wait: it is still ahead of the job asked
    # for after it (the trainer's "queued behind N" and the next batch's order).
    assert partner.status == GenerationJob.Status.QUEUED and partner.attempts == 0
    assert partner.queued_at == place
    assert job_queue_position(job=partner) < job_queue_position(job=later)


def _failing_backend(monkeypatch, error: Exception) -> None:
    """Every generation call fails with ``error``, as a backend that cannot be built does."""
    from sampler.generation import services as generation_services

    def fail(version):
        raise error

    monkeypatch.setattr(generation_services, "_backend", fail)


def _interrupted_once(monkeypatch, name: str) -> list:
    """``services.<name>`` does its work, then, the first time, meets the worker's time limit
    (Celery's soft limit, raised wherever the worker is, here before the write commits): the
    calls made are listed."""
    from celery.exceptions import SoftTimeLimitExceeded

    write = getattr(services, name)
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(args)
        write(*args, **kwargs)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded()

    monkeypatch.setattr(services, name, interrupted)
    return calls


@pytest.fixture
def worker_run_cut_off(trainer, monkeypatch, django_capture_on_commit_callbacks):
    """Runs a generation job by a worker's message, failing with ``error``, the time limit
    landing in ``services.<write>`` the first time: the row as the run left it, and the calls
    of ``write`` (none without one). ``row``: fields the job has before it is claimed."""

    def run(error: Exception, write: str | None, **row):
        job = _job(trainer, queue=False)
        GenerationJob.objects.filter(pk=job.pk).update(
            publish_token="t", queue="interactive", **row
        )
        _failing_backend(monkeypatch, error)
        calls = _interrupted_once(monkeypatch, write) if write else []
        with django_capture_on_commit_callbacks(execute=True):
            done = services.job_execute(kind_name="generation", job_id=job.pk, token="t")
        return done, calls

    return run


def test_a_time_limit_met_while_a_failure_is_recorded_still_records_it_once(
    policy, broker, settings, worker_run_cut_off
):
    """The job failed, and the worker's time limit lands while the failure is written (its
    transaction rolled back): the failure is written once more and the run ends with it
    recorded. Before, the limit left the row running, and the sweeper queued it again a
    minute later: the failed job ran again, its reason lost ("its worker stopped")."""
    done, calls = worker_run_cut_off(RuntimeError("the engine crashed"), "_fail_locked")
    assert done.status == GenerationJob.Status.FAILED and done.attempts == 1
    assert done.error.startswith("RuntimeError: the engine crashed")
    assert len(calls) == 2 and not broker.sent
    # The sweeper finds nothing to take back: the job is not run again.
    stale = timezone.now() + timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    assert services.jobs_tick(now=stale).requeued == 0
    done.refresh_from_db()
    assert done.status == GenerationJob.Status.FAILED and not broker.sent
    assert done.error.startswith("RuntimeError: the engine crashed")


def test_a_time_limit_met_while_a_job_is_queued_again_queues_it_once(
    policy, broker, worker_run_cut_off
):
    """A model server that is down queues the job again; the time limit landing while that is
    written writes it once more: the row is queued with one new message, not left running."""
    from sampler.generation.backends import BackendUnavailable

    done, calls = worker_run_cut_off(BackendUnavailable("The model server is down."), "job_enqueue")
    assert done.status == GenerationJob.Status.QUEUED and done.attempts == 1
    assert done.error == "The model server is down." and len(calls) == 2
    assert [message["args"] for message in broker.sent] == [
        ("generation", done.pk, done.publish_token)
    ]


def test_a_time_limit_met_while_the_connection_is_checked_still_records_the_failure(
    policy, broker, settings, worker_run_cut_off
):
    """The job failed, and the worker's time limit lands as the executor checks that the run
    left its connection usable, before the failure is written: the failure is written and
    the run ends with it recorded. Before, the check ran outside the shield the writes have:
    the limit escaped the executor with the row left running, for the sweeper to run again."""
    done, calls = worker_run_cut_off(
        RuntimeError("the engine crashed"), "_drop_unusable_connection"
    )
    assert done.status == GenerationJob.Status.FAILED and done.attempts == 1
    assert done.error.startswith("RuntimeError: the engine crashed")
    assert len(calls) == 2 and not broker.sent
    stale = timezone.now() + timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    assert services.jobs_tick(now=stale).requeued == 0


def _failure_records(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == services.__name__ and " failed" in record.getMessage()
    ]


def test_a_job_that_fails_is_logged_once_with_its_id_and_reason(
    policy, broker, caplog, worker_run_cut_off
):
    """The time limit lands just after the failure was logged (its traceback being written
    out): the failure, written once more, finds the job failed already and logs nothing again.
    Before, the job was logged failed twice, the first record without the reason."""
    import logging

    from celery.exceptions import SoftTimeLimitExceeded

    class LimitOnceLogged(logging.Handler):
        def emit(self, record):
            if " failed" in record.getMessage() and not getattr(self, "met", False):
                self.met = True
                raise SoftTimeLimitExceeded()

    handler = LimitOnceLogged()
    logging.getLogger().addHandler(handler)  # after the capture's: it sees the record first
    try:
        done, _calls = worker_run_cut_off(RuntimeError("the engine crashed"), None)
    finally:
        logging.getLogger().removeHandler(handler)
    assert done.status == GenerationJob.Status.FAILED and handler.met
    assert _failure_records(caplog) == [
        f"generation job {done.pk} failed: RuntimeError: the engine crashed"
    ]


def test_a_job_given_up_as_a_time_limit_cuts_its_failure_off_is_logged_failed_once(
    policy, broker, settings, caplog, worker_run_cut_off
):
    """The model server is down on the job's last attempt and the time limit lands while its
    failure is written (rolled back): written once more, it is logged once, when it is in.
    Before, it was logged before the write, so twice."""
    from sampler.generation.backends import BackendUnavailable

    done, calls = worker_run_cut_off(
        BackendUnavailable("The model server is down."),
        "_fail_locked",
        attempts=settings.JOB_MAX_ATTEMPTS - 1,
    )
    assert done.status == GenerationJob.Status.FAILED and len(calls) == 2
    reason = f"The model server is down. Gave up after {settings.JOB_MAX_ATTEMPTS} attempts."
    assert done.error == reason and not broker.sent
    assert _failure_records(caplog) == [f"generation job {done.pk} failed: {reason}"]


@pytest.fixture
def limit_as_the_failure_commits(monkeypatch):
    """The worker's time limit lands as the first transaction that leaves the job failed
    commits (as the commit returns: the row is failed, nothing after it in the run done)."""
    from celery.exceptions import SoftTimeLimitExceeded
    from django.db import transaction

    close = transaction.Atomic.__exit__
    met = []

    def exit_then_limit(self, exc_type, exc_value, traceback):
        closed = close(self, exc_type, exc_value, traceback)
        failed = GenerationJob.objects.filter(status=GenerationJob.Status.FAILED).exists()
        if exc_type is None and not met and failed:
            met.append(True)
            raise SoftTimeLimitExceeded()
        return closed

    monkeypatch.setattr(transaction.Atomic, "__exit__", exit_then_limit)
    return met


def test_a_failure_is_logged_though_a_time_limit_lands_as_it_commits(
    policy, broker, caplog, worker_run_cut_off, limit_as_the_failure_commits
):
    """The job failed, and the worker's time limit lands as the failure commits, before
    anything after it ran: the failure is logged all the same, once. Before, it was logged
    after the commit, so not at all: the write made once more found the job failed already."""
    done, _calls = worker_run_cut_off(RuntimeError("the engine crashed"), None)
    assert done.status == GenerationJob.Status.FAILED and limit_as_the_failure_commits
    assert _failure_records(caplog) == [
        f"generation job {done.pk} failed: RuntimeError: the engine crashed"
    ]


def test_a_job_given_up_is_logged_though_a_time_limit_lands_as_it_commits(
    policy, broker, settings, caplog, worker_run_cut_off, limit_as_the_failure_commits
):
    """The model server is down on the job's last attempt, and the time limit lands as its
    failure commits: it is logged once all the same (before, not at all)."""
    from sampler.generation.backends import BackendUnavailable

    done, _calls = worker_run_cut_off(
        BackendUnavailable("The model server is down."),
        None,
        attempts=settings.JOB_MAX_ATTEMPTS - 1,
    )
    assert done.status == GenerationJob.Status.FAILED and limit_as_the_failure_commits
    reason = f"The model server is down. Gave up after {settings.JOB_MAX_ATTEMPTS} attempts."
    assert _failure_records(caplog) == [f"generation job {done.pk} failed: {reason}"]


@pytest.mark.django_db(transaction=True)
def test_a_job_queued_again_is_logged_though_a_time_limit_cuts_its_publication_off(
    policy, trainer, broker, monkeypatch, caplog
):
    """The model server is down, the job goes back to its queue, and the time limit lands
    while the message is sent, after the write committed (real commits here): the retry is
    said once all the same. Before, it was logged after the publication, so not at all: the
    write made once more found the job queued already. The outbox sends the lost message."""
    import contextlib

    from celery.exceptions import SoftTimeLimitExceeded

    from config.celery import app
    from sampler.generation.backends import BackendUnavailable

    job = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="t", queue="interactive")
    _failing_backend(monkeypatch, BackendUnavailable("The model server is down."))
    recorded = app.send_task
    cut_off = []

    def send_cut_off_once(*args, **kwargs):
        if not cut_off:
            cut_off.append(args)
            raise SoftTimeLimitExceeded()
        return recorded(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_cut_off_once)
    with contextlib.suppress(SoftTimeLimitExceeded):
        services.job_execute(kind_name="generation", job_id=job.pk, token="t")
    done = GenerationJob.objects.get(pk=job.pk)
    assert done.status == GenerationJob.Status.QUEUED and cut_off and not broker.sent
    said = [
        record.getMessage() for record in caplog.records if "tried again" in record.getMessage()
    ]
    assert said == [f"generation job {job.pk} will be tried again: The model server is down."]


def test_a_job_run_inside_another_that_sends_it_back_to_its_queue_is_not_logged_failed(
    policy, trainer, monkeypatch, caplog
):
    """A model server that is down, met by a job run inside another (``raise_retry_later``):
    this job is failed with the reason and the job running it goes back to its queue, which
    its own record tells. Before, this job was logged failed as well."""
    from sampler.generation.backends import BackendUnavailable
    from sampler.jobs.kinds import JobRetryLater

    job = _job(trainer, queue=False)
    _failing_backend(monkeypatch, BackendUnavailable("The model server is down."))
    with pytest.raises(JobRetryLater):
        services.job_run_inline(job=job, raise_retry_later=True)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert job.error == "The model server is down."
    assert _failure_records(caplog) == []


def test_a_time_limit_met_while_a_job_run_inside_another_is_failed_records_it_and_stops(
    policy, trainer, monkeypatch
):
    """Run inside another job, whose time limit lands while this one's failure is written:
    the failure is written once more, then the limit is raised on for that job to stop with
    it. Before, this job's row was left running until the sweeper failed it as stalled."""
    from celery.exceptions import SoftTimeLimitExceeded

    job = _job(trainer, queue=False)
    _failing_backend(monkeypatch, RuntimeError("the engine crashed"))
    calls = _interrupted_once(monkeypatch, "_fail_locked")

    with pytest.raises(SoftTimeLimitExceeded):
        services.job_run_inline(job=job)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED and job.attempts == 1
    assert job.error.startswith("RuntimeError: the engine crashed") and len(calls) == 2


@pytest.fixture
def success_cut_off(monkeypatch):
    """A kind whose ``execute`` does its work and returns, leaving its success to the executor
    (as ``JobKind`` allows), registered for this test only on the generation jobs' table; the
    worker's time limit lands in the first success written, before the write. Gives the kind,
    the jobs its ``execute`` ran and the successes tried."""
    from celery.exceptions import SoftTimeLimitExceeded

    from sampler.jobs import kinds

    ran, calls = [], []
    kind = kinds.JobKind(
        name="executor_succeeds",
        model=GenerationJob,
        execute=lambda context: ran.append(context.job.pk),
        queue=Queue.INTERACTIVE.value,
        matches=lambda job: False,  # the table's rows stay the generation kind's
    )
    monkeypatch.setitem(kinds._kinds, kind.name, kind)
    succeed = JobContext.succeed

    def interrupted(context, **fields):
        calls.append(context.job.pk)
        if len(calls) == 1:
            raise SoftTimeLimitExceeded()
        return succeed(context, **fields)

    monkeypatch.setattr(JobContext, "succeed", interrupted)
    return kind, ran, calls


def test_a_time_limit_met_while_the_executor_records_a_success_still_records_it(
    policy, trainer, broker, settings, success_cut_off
):
    """The job's work is done and the worker's time limit lands while the executor writes its
    success: the success is written once more and the run ends with it recorded. Before, the
    limit escaped the executor with the row left running, and the sweeper queued it again: the
    finished work ran a second time."""
    kind, ran, calls = success_cut_off
    job = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="t", queue="interactive")
    done = services.job_execute(kind_name=kind.name, job_id=job.pk, token="t")
    assert done.status == GenerationJob.Status.SUCCEEDED and done.error == ""
    assert ran == [job.pk] and len(calls) == 2
    # The sweeper finds nothing to take back: the finished work is not run again.
    stale = timezone.now() + timedelta(seconds=settings.JOB_STALE_AFTER + 5)
    assert services.jobs_tick(now=stale).requeued == 0
    done.refresh_from_db()
    assert done.status == GenerationJob.Status.SUCCEEDED and not broker.sent


def test_a_time_limit_met_while_a_job_run_inside_another_succeeds_records_it_and_stops(
    policy, trainer, success_cut_off
):
    """Run inside another job (no token), whose time limit lands while this one's success is
    written: the success is written once more, then the limit is raised on for that job to
    stop with it, as when it lands while a failure is written."""
    from celery.exceptions import SoftTimeLimitExceeded

    kind, ran, calls = success_cut_off
    job = _job(trainer, queue=False)
    with pytest.raises(SoftTimeLimitExceeded):
        services.job_execute(kind_name=kind.name, job_id=job.pk, token=None)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert ran == [job.pk] and len(calls) == 2


def test_a_time_limit_met_while_a_failed_batch_hands_back_its_partners_hands_back_each_once(
    policy, trainer, broker, monkeypatch, django_capture_on_commit_callbacks
):
    """The batch fails, and the worker's time limit lands while its first partner is handed
    back (its transaction rolled back): that hand-back is made once more, the next partner is
    handed back too, and the batch's own error is raised on. Before, the limit ended the
    hand-backs there: both partners stayed running, claimed by this worker, until the sweeper
    found them stalled and charged each an attempt."""
    with django_capture_on_commit_callbacks(execute=True):
        lead, first, second = (_job(trainer) for _ in range(3))
    kind = job_kind_named("generation")
    claimed = services.job_claim(kind=kind, job_id=lead.pk, token=lead.publish_token, worker="w1")
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="w1")
    sent_before = len(broker.sent)
    calls = _interrupted_once(monkeypatch, "_publish_again")

    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError, match="mid-batch"),
        services.job_batch(context=context, candidates=[first, second]),
    ):
        raise RuntimeError("the model crashed mid-batch")

    rows = GenerationJob.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
    assert [(row.status, row.attempts) for row in rows] == [("queued", 0), ("queued", 0)]
    assert len(calls) == 3
    # One message each, carrying its current token (none for the write rolled back).
    assert [message["args"] for message in broker.sent[sent_before:]] == [
        ("generation", row.pk, row.publish_token) for row in rows
    ]


def test_each_kind_of_job_takes_its_time_limit_from_the_settings_none_by_default(tmp_path):
    """Training runs, comparisons, red-team runs and exports ran as long as they took: a
    runaway one held its worker for good. Each kind now has its limit setting (0, the default:
    none), carried to the worker with its messages as a generation job's is."""
    import json
    import os

    from tests.conftest import run_python

    code = (
        "import django, json; django.setup(); "
        "from sampler.jobs.kinds import job_kinds; "
        "print(json.dumps({kind.name: kind.time_limit for kind in job_kinds()}))"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "VAR_DIR": str(tmp_path),
        "TRAINING_TIME_LIMIT": "7200",
        "EXPORT_TIME_LIMIT": "600",
    }
    limits = json.loads(run_python("-c", code, env=environment).stdout.splitlines()[-1])
    assert limits["training"] == 7200 and limits["export"] == 600
    assert not limits["comparison"] and not limits["attack_run"]
    assert limits["generation"] == limits["ranking_preparation"] == 300
    unset = {name: "0" for name in ("TRAINING_TIME_LIMIT", "EXPORT_TIME_LIMIT")}
    limits = json.loads(run_python("-c", code, env=environment | unset).stdout.splitlines()[-1])
    assert not any(limits[name] for name in ("training", "comparison", "attack_run", "export"))


def test_a_term_to_the_pool_process_hands_its_job_back_uncounted_for_the_next_worker(
    policy, trainer, broker, django_capture_on_commit_callbacks, monkeypatch, pool_process_signals
):
    """The worker's cold shutdown (`make run` stopped) stops the job its pool process runs with
    a TERM, here as its replies are stored: the job goes back to its queue at once, its attempt
    not counted, under a new message (none of its replies stored), the stop is raised on for
    the process to end, and the next worker runs the job to the end; the message it ran from
    does nothing any more. Before, the job was failed with the pool's SystemExit."""
    moderate = generation_services.samples_moderate
    terms = []

    def stopped_once(**kwargs):
        if not terms:
            terms.append(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
        return moderate(**kwargs)

    monkeypatch.setattr(generation_services, "samples_moderate", stopped_once)
    with django_capture_on_commit_callbacks(execute=True):
        job = _job(trainer)
    job.refresh_from_db()
    first_token, place, sent_before = job.publish_token, job.queued_at, len(broker.sent)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(SystemExit):
        tasks.run_job("generation", job.pk, first_token)
    job.refresh_from_db()
    assert terms == [signal.SIGTERM]
    assert (job.status, job.attempts, job.error) == (GenerationJob.Status.QUEUED, 0, "")
    assert job.queued_at == place and not job.samples.exists()
    assert job.publish_token != first_token
    assert [message["args"] for message in broker.sent[sent_before:]] == [
        ("generation", job.pk, job.publish_token)
    ]

    clear_terminate_handler_fired()  # the next worker's pool process
    tasks.run_job("generation", job.pk, first_token)  # the old message: nothing to do
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.QUEUED
    tasks.run_job("generation", job.pk, job.publish_token)
    job.refresh_from_db()
    assert (job.status, job.attempts) == (GenerationJob.Status.SUCCEEDED, 1)
    assert job.samples.count() == 2
