"""/healthz and /readyz (unit tier: SQLite, kombu's in-memory broker, heartbeat rows)."""

import logging

from django.test import Client

from config.celery import Queue
from tests.config.conftest import beat


def test_healthz_answers_without_touching_the_database():
    # No `db` fixture: pytest-django fails any query, so a 200 proves none was made.
    response = Client().get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_probes_pass_host_checks_https_redirects_and_login(
    settings, every_queue_served, memory_broker
):
    settings.ALLOWED_HOSTS = ["tandem.example.org"]
    settings.SECURE_SSL_REDIRECT = True
    settings.DEBUG = False
    client = Client()

    # A probe from the container network: an address for a host name, plain HTTP, no session.
    assert client.get("/healthz", HTTP_HOST="172.18.0.5:8000").status_code == 200
    assert client.get("/readyz", HTTP_HOST="172.18.0.5:8000").status_code == 200
    # Every other page still gets the host check.
    assert client.get("/accounts/login/", HTTP_HOST="172.18.0.5:8000").status_code == 400


def test_probes_accept_get_only():
    assert Client().post("/healthz").status_code == 405


def test_readyz_is_ready_with_the_database_the_broker_and_a_live_worker_per_queue(
    every_queue_served, memory_broker
):
    response = Client().get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["broker"] == {"ok": True}
    assert body["checks"]["workers"] == {"ok": True, "live": {q.value: 1 for q in Queue}}


def test_readyz_names_the_queues_without_a_live_worker(db, memory_broker, caplog):
    beat("interactive@a", ["interactive"])
    beat("bulk@a", ["generation", "default"])
    # Silent for longer than WORKER_LIVE_SECONDS: dead.
    beat("training@a", ["training"], seconds_ago=3600)

    with caplog.at_level(logging.INFO):
        response = Client().get("/readyz")

    # One warning that says why; no 5xx ERROR from django.request (a probe, not a failure).
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("config.health", "WARNING", "Not ready: workers: no live worker for training")
    ]

    assert response.status_code == 503
    workers = response.json()["checks"]["workers"]
    assert workers["ok"] is False
    assert workers["live"] == {"interactive": 1, "generation": 1, "training": 0, "default": 1}
    assert workers["error"] == "no live worker for training"


def test_readyz_needs_only_the_configured_queues(db, memory_broker, settings):
    settings.READY_QUEUES = ["interactive"]
    beat("interactive@a", ["interactive"])

    response = Client().get("/readyz")

    assert response.status_code == 200
    assert response.json()["checks"]["workers"]["live"] == {"interactive": 1}
