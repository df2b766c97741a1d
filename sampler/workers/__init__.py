"""Celery worker heartbeats: which workers are alive and which queues they consume.

Each worker process writes its row every ``WORKER_HEARTBEAT_SECONDS`` (``heartbeat.py``, a
Celery bootstep); ``/readyz`` and ``/metrics`` read the rows (``selectors.py``) instead of
broadcasting a ping to every worker on every probe.
"""
