"""PostgreSQL connections: web processes share a psycopg pool (Django's "pool" option), Celery
workers keep one plain connection per process (config/celery.py)."""

import json
import os
import threading
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, connections

from tests.conftest import WAIT_SECONDS, run_python

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def test_postgresql_is_used_through_a_bounded_pool_with_conn_max_age_zero():
    from psycopg_pool import ConnectionPool

    assert connection.vendor == "postgresql"
    options = connection.settings_dict["OPTIONS"]["pool"]
    assert options == {
        "min_size": settings.DATABASE_POOL_MIN_SIZE,
        "max_size": settings.DATABASE_POOL_MAX_SIZE,
        "timeout": settings.DATABASE_POOL_TIMEOUT,
    }
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone()[0] == connection.settings_dict["NAME"]
    assert isinstance(connection.pool, ConnectionPool)
    assert connection.pool.max_size == settings.DATABASE_POOL_MAX_SIZE


def test_more_threads_than_connections_share_the_pool_and_all_succeed():
    """Twice as many threads as the pool holds, each in a query that takes a while: they wait
    for a free connection instead of failing, and PostgreSQL never sees more than max_size."""
    max_size = connection.pool.max_size
    backend_pids: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2 * max_size)

    def query() -> None:
        try:
            barrier.wait(timeout=WAIT_SECONDS)
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), pg_sleep(0.3)")
                backend_pids.append(cursor.fetchone()[0])
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections["default"].close()  # back to the pool, as at the end of a request

    threads = [threading.Thread(target=query) for _ in range(2 * max_size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT_SECONDS)
    assert errors == []
    assert len(backend_pids) == 2 * max_size
    assert len(set(backend_pids)) <= max_size
    stats = connection.pool.get_stats()
    assert stats["pool_max"] == max_size and stats.get("requests_errors", 0) == 0


def test_a_celery_worker_process_takes_the_pool_out_and_keeps_one_plain_connection():
    code = (
        "import django; django.setup();"
        "from celery import signals; import config.celery;"
        "from django.db import connection;"
        "signals.celeryd_init.send(sender='worker@test', instance=None, conf=None, options={});"
        "connection.ensure_connection();"
        "import json; print(json.dumps([connection.settings_dict['OPTIONS'].get('pool'),"
        " connection.settings_dict['CONN_MAX_AGE'], connection.pool is None]))"
    )
    db = connection.settings_dict
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    environment = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
    }
    result = run_python("-c", code, env=environment)
    pool, conn_max_age, no_pool = json.loads(result.stdout.strip().splitlines()[-1])
    assert pool is None and no_pool
    assert conn_max_age == settings.DATABASE_WORKER_CONN_MAX_AGE
