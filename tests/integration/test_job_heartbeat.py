"""A running job's heartbeat thread on PostgreSQL: it outlives a lost database connection."""

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError
from django.db import DatabaseError, connection
from django.utils import timezone

from sampler.jobs import services
from sampler.jobs.kinds import JobContext, job_kind_named
from sampler.management.commands._training import run_inline
from sampler.runs.models import TrainingRun
from sampler.runs.services import training_run_create
from sampler.training.synthetic import synthetic_rankings
from tests.conftest import racing, recording_thread, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _terminate_other_connections() -> int:
    """What a database restart or a dropped network link does to every other connection of
    this test database (other runs' databases are left alone)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


def test_the_heartbeat_thread_reconnects_after_its_connection_was_dropped(settings):
    settings.JOB_HEARTBEAT_SECONDS = 1
    run = TrainingRun.objects.create(kind="reward", output_name="rm")
    kind = job_kind_named("training")
    claimed = services.job_claim(kind=kind, job_id=run.pk, token=None, worker="here/1")
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="here/1")
    with services._Heartbeat(context):
        first = claimed.heartbeat_at
        wait_until(
            lambda: TrainingRun.objects.get(pk=run.pk).heartbeat_at > first,
            what="the first heartbeat",
        )
        assert _terminate_other_connections() >= 1
        dropped = timezone.now()
        # The thread's next beats find its connection gone; the ones after reach the database.
        wait_until(
            lambda: TrainingRun.objects.get(pk=run.pk).heartbeat_at > dropped,
            what="a heartbeat after the connection was dropped",
        )
        assert not context.lost.is_set()


def test_a_run_whose_database_connection_dropped_mid_training_is_recorded_failed(
    policy, settings, tmp_path
):
    settings.MODEL_ROOT = tmp_path / "models"
    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rankings(12)))
    run = training_run_create(
        kind="reward",
        config={"max_steps": 4, "normalize_to_demonstrations": False},
        data_path=str(data),
        queue=False,
    )
    dropped = []

    def drop_own_connection(event) -> None:
        # The database drops the command's connection once, between two progress writes.
        if event.kind == "train" and not dropped:
            dropped.append(event.step)
            with pytest.raises(DatabaseError), connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    # What `manage.py train_reward` does with the run it made.
    with pytest.raises(CommandError, match="Database trouble"):
        run_inline(StringIO(), run.pk, drop_own_connection)
    run.refresh_from_db()
    assert dropped
    # The run says what happened and is not left running, as if a process still trained it.
    assert run.status == TrainingRun.Status.FAILED and "Database trouble" in run.error


def test_a_heartbeat_that_lands_while_the_sweeper_reaches_the_row_keeps_the_job_running(
    settings,
):
    run = TrainingRun.objects.create(kind="reward", output_name="rm")
    kind = job_kind_named("training")
    claimed = services.job_claim(kind=kind, job_id=run.pk, token=None, worker="elsewhere/1")
    TrainingRun.objects.filter(pk=run.pk).update(
        queue="training",
        heartbeat_at=timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER + 5),
    )
    context = JobContext(kind=kind, job=claimed, token=claimed.publish_token, worker="elsewhere/1")
    outcome: dict[str, object] = {}
    sweeper = recording_thread(services.jobs_tick, outcome, "report")
    with racing(sweeper, what="the sweeper"):
        # The worker beats again (after a database outage, say): written, not yet committed,
        # while the sweeper has found the row stale and waits to lock it.
        context.heartbeat()

    assert "error" not in outcome, outcome
    assert outcome["report"].requeued == 0 and outcome["report"].failed == 0
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING and run.publish_token == context.token
    context.heartbeat()  # still the worker's to run
