"""The worker side: a Celery consumer bootstep that writes the worker's heartbeat row.

Registered on the Celery app in config/celery.py. It writes from a thread of its own, so a
slow or unreachable database never stalls the worker's event loop; the thread runs while the
consumer runs (a consumer that lost its broker stops beating until it is back).
"""

import logging
import os
import socket
import threading
from datetime import timedelta
from pathlib import Path

from celery import bootsteps
from celery.worker import state as worker_state
from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone

from sampler.workers import services

logger = logging.getLogger(__name__)

# Rows of workers silent this long are deleted when a worker starts.
FORGET_AFTER = timedelta(days=1)


class WorkerHeartbeatStep(bootsteps.StartStopStep):
    """Beats every ``WORKER_HEARTBEAT_SECONDS`` while the consumer runs; removes the row when
    the worker shuts down."""

    # The task consumer knows which queues this worker consumes.
    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs) -> None:
        super().__init__(parent, **kwargs)
        self.started_at = timezone.now()
        self.name = ""
        self.queues: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent) -> None:
        self.name = parent.hostname
        self.queues = sorted(parent.app.amqp.queues.consume_from)
        self._stop.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name="tandem-worker-heartbeat", daemon=True
            )
            self._thread.start()

    def stop(self, parent) -> None:
        """The consumer stops: the worker shuts down, or it restarts its consumer after losing
        the broker (then ``start`` follows once the broker is back)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=settings.WORKER_HEARTBEAT_SECONDS + 5)
        if worker_state.should_stop is not None or worker_state.should_terminate is not None:
            self._remove()

    def terminate(self, parent) -> None:
        self.stop(parent)

    def _remove(self) -> None:
        try:
            services.worker_heartbeat_remove(name=self.name)
        except DatabaseError as error:
            logger.warning("Could not remove the heartbeat of %s: %s", self.name, error)
        finally:
            connections.close_all()

    def _run(self) -> None:
        try:
            services.worker_heartbeats_prune(older_than=FORGET_AFTER)
        except DatabaseError as error:
            logger.warning("Could not prune old worker heartbeats: %s", error)
        while True:
            self.beat()
            if self._stop.wait(settings.WORKER_HEARTBEAT_SECONDS):
                return

    def beat(self) -> None:
        """One heartbeat. The connection is closed after it: it is used once per interval,
        and a pool process forked meanwhile must not share an open one."""
        try:
            services.worker_heartbeat_record(
                name=self.name,
                queues=self.queues,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                started_at=self.started_at,
            )
        except DatabaseError as error:
            logger.warning("Heartbeat of %s not written: %s", self.name, error)
            return
        finally:
            connections.close_all()
        if settings.WORKER_HEARTBEAT_FILE:
            Path(settings.WORKER_HEARTBEAT_FILE).touch()
