"""The worker's time limit cutting off a query of a job's run, on PostgreSQL: the connection
is left taking no other command (the query's answer unread), as only a real server shows."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction

from sampler.generation.models import GenerationJob
from sampler.jobs import kinds, services
from sampler.jobs.kinds import JobContext, job_kind_named
from tests.sampler.jobs.test_executor import _job

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _query_cut_off() -> None:
    """What the soft limit landing in a query does: the query sent, its answer never read."""
    connection.connection.pgconn.send_query(b"SELECT pg_sleep(0.2)")
    raise SoftTimeLimitExceeded()


def _in_autocommit(context) -> None:
    connection.ensure_connection()
    _query_cut_off()


def _in_the_success_commit(context) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connection, "commit", _query_cut_off)
        with transaction.atomic():
            context.succeed()


def _register(monkeypatch, execute) -> kinds.JobKind:
    kind = kinds.JobKind(
        name="cut_off",
        model=GenerationJob,
        execute=execute,
        queue="interactive",
        matches=lambda job: False,  # the table's rows stay the generation kind's
    )
    monkeypatch.setitem(kinds._kinds, kind.name, kind)
    return kind


@pytest.mark.parametrize("execute", [_in_autocommit, _in_the_success_commit])
def test_a_time_limit_that_cuts_off_a_query_of_a_run_leaves_its_job_recorded_not_running(
    policy, trainer, monkeypatch, execute
):
    """The limit lands in a query of the job (a write of its own, or the commit of its results
    with its success): its outcome is recorded on a new connection, and the job is failed, not
    left running for the sweeper to run again. Before, recording it on the connection the
    limit had cut off failed as well ("another command is already in progress"), and the
    error escaped the executor with the row running; a cut-off commit was taken for the error
    Django raised as the limit unwound it ("can't change 'autocommit' now")."""
    kind = _register(monkeypatch, execute)
    job = _job(trainer, queue=False)
    GenerationJob.objects.filter(pk=job.pk).update(publish_token="t", queue="interactive")
    done = services.job_execute(kind_name=kind.name, job_id=job.pk, token="t")
    assert done.status == GenerationJob.Status.FAILED
    assert done.error == "It ran past its time limit and was stopped."


def test_a_time_limit_that_cuts_off_the_commit_of_a_job_run_inside_another_is_raised_on(
    policy, trainer, monkeypatch
):
    """Run inside another job (no token), the commit of its success cut off: this job is
    failed saying so, and the limit itself (not the error Django raised as it unwound) is
    raised on for the job running it to stop with it."""
    kind = _register(monkeypatch, _in_the_success_commit)
    job = _job(trainer, queue=False)
    with pytest.raises(SoftTimeLimitExceeded):
        services.job_execute(kind_name=kind.name, job_id=job.pk, token=None)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED and job.error == services.INSIDE_TIME_LIMIT


def test_a_time_limit_that_cuts_off_a_query_of_a_batch_hands_its_partners_back(policy, trainer):
    """The limit lands in a query of a batch (a partner's samples being written, say): the
    partners it did not finish are handed back on a new connection, queued again with their
    attempts not counted, and the limit is raised on. Before, the first hand-back was made on
    the connection the limit had cut off and failed ("another command is already in
    progress"): that error escaped the batch, and every partner stayed running for the
    sweeper, each charged an attempt."""
    lead, first, second = (_job(trainer) for _ in range(3))
    kind = job_kind_named("generation")
    claimed = services.job_claim(kind=kind, job_id=lead.pk, token=lead.publish_token, worker="w1")
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="w1")

    with (
        pytest.raises(SoftTimeLimitExceeded),
        services.job_batch(context=context, candidates=[first, second]),
    ):
        connection.ensure_connection()
        _query_cut_off()

    rows = GenerationJob.objects.filter(pk__in=[first.pk, second.pk]).order_by("pk")
    assert [(row.status, row.attempts) for row in rows] == [("queued", 0), ("queued", 0)]
