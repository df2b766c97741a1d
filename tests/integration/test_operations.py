"""Readiness and metrics against the real parts: PostgreSQL, this run's redis-server, a real
Celery worker writing its heartbeat; each part of /readyz failing for real."""

import psutil
import pytest
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from config.celery import Queue
from tests.conftest import broker_at, free_port, redis_server_start, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _readyz() -> tuple[int, dict]:
    response = Client().get("/readyz")
    return response.status_code, response.json()


def test_readyz_is_ready_once_a_real_worker_beats_for_every_queue(celery_worker):
    body = wait_until(lambda: (ready := _readyz())[0] == 200 and ready[1], what="ready")

    assert body["checks"] == {
        "database": {"ok": True},
        "broker": {"ok": True},
        "workers": {"ok": True, "live": {queue.value: 1 for queue in Queue}},
    }


def test_readyz_reports_a_broker_that_stops(tmp_path):
    server = redis_server_start(tmp_path)
    try:
        with broker_at(server.url):
            _, up = _readyz()
            server.stop()
            down_status, down = _readyz()
    finally:
        server.stop()

    assert up["checks"]["broker"] == {"ok": True}
    assert down_status == 503
    assert down["status"] == "unavailable"
    assert down["checks"]["broker"] == {"ok": False, "error": "OperationalError"}
    assert down["checks"]["database"] == {"ok": True}


def test_readyz_reports_a_database_that_does_not_answer(monkeypatch):
    connection.close()
    # The connection pool keeps the address it was made with: a new one is made for this one
    # (after DATABASE_POOL_TIMEOUT without a connection, the request fails), and again after.
    connection.close_pool()
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", str(free_port()))  # nothing listens

    status, body = _readyz()
    connection.close()
    connection.close_pool()

    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
    assert body["checks"]["workers"]["ok"] is False
    assert body["checks"]["broker"] == {"ok": True}


def test_readyz_reports_a_queue_whose_worker_stopped_beating(celery_worker, settings):
    wait_until(lambda: _readyz()[0] == 200, what="ready")
    # A cutoff an hour ahead: no heartbeat counts, however fresh (0 left the one written
    # between the cutoff and the query live).
    settings.WORKER_LIVE_SECONDS = -3600

    status, body = _readyz()

    assert status == 503
    assert body["checks"]["workers"]["error"] == "no live worker for " + ", ".join(Queue)


def test_metrics_show_the_real_workers_heartbeat_and_the_queues(celery_worker, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_CIDRS = ["127.0.0.1/32"]
    wait_until(lambda: _readyz()[0] == 200, what="the worker's heartbeat")

    response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }
    ages = {
        labels[0][1]: value
        for (name, labels), value in samples.items()
        if name == "tandem_worker_heartbeat_age_seconds"
    }
    assert len(ages) == 1
    [(worker, age)] = ages.items()
    assert worker.startswith("test-") and 0 <= age <= settings.WORKER_LIVE_SECONDS
    for queue in Queue:
        assert samples[("tandem_workers_live", (("queue", queue.value),))] == 1
        assert samples[("tandem_queue_depth", (("queue", queue.value),))] == 0
    assert samples[("tandem_broker_up", ())] == 1
    assert any(
        name == "django_db_execute_total" and dict(labels)["vendor"] == "postgresql"
        for name, labels in samples
    )


def test_worker_processes_run_one_compute_thread(celery_worker):
    """TORCH_THREADS (default 1) reaches the worker and its pool process, before torch."""
    pool = psutil.Process(celery_worker.pid).children()
    for process in [psutil.Process(celery_worker.pid), *pool]:
        environment = process.environ()
        for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            assert environment[variable] == "1", (process.pid, variable)
