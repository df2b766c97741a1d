"""gunicorn's settings for the web service: ``gunicorn config.wsgi:application --config
python:config.gunicorn`` (docker-compose.yml). Read from the environment like everything else."""

import os

from prometheus_client import multiprocess

bind = f"0.0.0.0:{os.environ.get('WEB_PORT', '8000')}"
# Processes (gunicorn's own variable); each holds no model, so a few are cheap.
workers = int(os.environ.get("WEB_CONCURRENCY", "3"))
# Threads per process (gunicorn's gthread worker when more than one). Each process's threads
# share its database connection pool: keep DATABASE_POOL_MAX_SIZE equal to this (README:
# "Security", connection sizing).
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
accesslog = "-"


def child_exit(server, worker) -> None:
    """A process that exits leaves its request metrics behind for /metrics to merge
    (PROMETHEUS_MULTIPROC_DIR); this marks them as a dead process's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
