"""A running job's heartbeat thread on PostgreSQL: it outlives a lost database connection."""

import pytest
from django.db import connection
from django.utils import timezone

from sampler.jobs import services
from sampler.jobs.kinds import JobContext, job_kind_named
from sampler.runs.models import TrainingRun
from tests.conftest import wait_until

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
