"""The Celery app, its queues and every periodic schedule."""

import logging
import os
from collections.abc import Callable
from enum import StrEnum

from celery import Celery, signals
from django.conf import settings
from django.db import connections, transaction
from kombu import Exchange
from kombu import Queue as KombuQueue
from kombu.exceptions import KombuError

from config.log import request_id_var
from config.threads import thread_caps_apply

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
logger = logging.getLogger(__name__)


class Queue(StrEnum):
    """Work is split by how long a person waits for it, so a suggestion never queues behind a
    training run. GPU machines consume the first three in production."""

    # A trainer is waiting: suggestions while writing, try-the-model.
    INTERACTIVE = "interactive"
    # Bulk generation nobody watches live: ranking candidates, red-team runs, comparisons.
    GENERATION = "generation"
    # Training runs (minutes to hours each).
    TRAINING = "training"
    # Everything else: exports, pool refills, sweeps.
    DEFAULT = "default"


# The worker groups a deployment starts, one Celery worker per group (`make run`, compose).
WORKER_GROUPS = {
    "interactive": [Queue.INTERACTIVE],
    "generation": [Queue.GENERATION],
    "training": [Queue.TRAINING],
    "default": [Queue.DEFAULT],
}


app = Celery("tandem")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Each queue has its own exchange and routing key, so a task routed to one queue is never
# copied into another.
app.conf.task_queues = [
    KombuQueue(queue.value, Exchange(queue.value, type="direct"), routing_key=queue.value)
    for queue in Queue
]
app.conf.task_default_queue = Queue.DEFAULT.value
# Every job goes through the one executor task (sampler.jobs.tasks.run_job), published to its
# kind's queue; everything else (periodic tasks) runs on the default queue.
# Job state lives in the database (sampler.jobs), not in Celery results.
app.conf.task_ignore_result = True
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
# One task at a time per worker process: generation holds a model and a CPU/GPU busy.
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_schedule = {
    # The job outbox and sweeper: publishes queued jobs whose message was lost (broker restart,
    # broker down at creation) and queues again running jobs whose worker stopped heartbeating.
    "jobs-tick": {"task": "sampler.jobs.tasks.jobs_tick", "schedule": settings.JOB_TICK_SECONDS},
    # Keeps RANKING_POOL_SIZE tasks ready or being sampled, so trainers never wait.
    "fill-ranking-pool": {"task": "ranking.rank.tasks.fill_ranking_pool", "schedule": 30.0},
    # Gives back the slots of ranking leases that ran out.
    "expire-ranking-leases": {"task": "ranking.rank.tasks.expire_ranking_leases", "schedule": 60.0},
    # Estimates trainers' trust again where new rankings arrived (pages read the stored one).
    "refresh-trust": {
        "task": "ranking.quality.tasks.refresh_trust",
        "schedule": float(settings.TRUST_REFRESH_SECONDS),
    },
    # Deletes the memos of what undos removed once older than UNDO_REMOVAL_TTL_SECONDS (a request
    # on such an id is a 404 from then on, as on an unknown one): the table holds a week of undos.
    "delete-expired-undo-removals": {
        "task": "ranking.rank.tasks.delete_expired_undo_removals",
        "schedule": 3600.0,
    },
    # Filters the model-written texts that are no sample's (edited suggestions, imported
    # replies) still waiting for a verdict: those whose publication on save was lost.
    "moderate-pending-message-texts": {
        "task": "labeling.conversations.tasks.moderate_pending_message_texts",
        "schedule": 60.0,
    },
    # Deletes Idempotency-Keys older than IDEMPOTENCY_KEY_TTL_SECONDS (their retries are answered
    # as new requests from then on anyway): the table holds about a day of creating POSTs.
    "delete-expired-idempotency-keys": {
        "task": "accounts.tasks.delete_expired_idempotency_keys",
        "schedule": 3600.0,
    },
}

# What a failed publication raises: the broker is down or unreachable.
BROKER_ERRORS: tuple[type[BaseException], ...] = (KombuError, OSError)


def unreachable_note(what: str) -> str:
    """What a page or a command says of queued work ``what`` (e.g. "Run 3") whose job's
    message the broker did not take: it is kept, and published once the broker is back."""
    return (
        f"{what} is saved, but the job queue is unreachable right now: it starts as soon "
        "as the queue is back."
    )


def enqueue(
    task_name: str,
    *,
    args: tuple,
    queue: str,
    options: dict | None = None,
    on_sent: Callable[[], None] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
) -> None:
    """Publish ``task_name`` once the current transaction commits (at once outside one).

    Services queue work through this helper, by task name, so they never import task modules.
    A broker that is down is reported to ``on_failure`` (and logged), never raised: the job's
    row stays queued and the outbox publishes it again.
    """

    def publish() -> None:
        try:
            app.send_task(task_name, args=args, queue=queue, retry=False, **(options or {}))
        except BROKER_ERRORS as error:
            logger.warning("Could not publish %s to %s: %s", task_name, queue, error)
            if on_failure is not None:
                on_failure(error)
            return
        if on_sent is not None:
            on_sent()

    transaction.on_commit(publish)


# The modules that define Celery tasks (the job executor, the periodic tasks, the filtering of
# texts that are no sample's).
app.autodiscover_tasks(
    ["sampler.jobs", "ranking.rank", "ranking.quality", "accounts", "labeling.conversations"]
)

# Worker-side hooks (operations).
# Every worker writes a heartbeat row while it consumes (sampler/workers/heartbeat.py); /readyz
# and /metrics read them.
app.steps["consumer"].add("sampler.workers.heartbeat:WorkerHeartbeatStep")


@signals.celeryd_init.connect
def _cap_threads_in_worker(**kwargs) -> None:
    """Before the worker imports anything: its pool processes inherit the cap (TORCH_THREADS)."""
    thread_caps_apply()


@signals.celeryd_init.connect
def _database_without_pool_in_worker(**kwargs) -> None:
    """A worker keeps one plain connection per process instead of a connection pool.

    Its pool processes are forked, and a psycopg pool (its connections and its maintenance
    threads) does not survive a fork; a process that runs one task at a time needs one
    connection anyway. Runs before the worker opens any connection (README: "Security")."""
    for connection in connections.all():
        if connection.settings_dict.get("OPTIONS", {}).pop("pool", None) is not None:
            connection.settings_dict["CONN_MAX_AGE"] = settings.DATABASE_WORKER_CONN_MAX_AGE
            connection.settings_dict["CONN_HEALTH_CHECKS"] = True


@signals.worker_process_init.connect
def _cap_threads_in_pool_process(**kwargs) -> None:
    """Again in each pool process, in case its parent had already started torch."""
    thread_caps_apply()


@signals.task_prerun.connect
def _log_task_id(task_id: str, **kwargs) -> None:
    """Log lines written while a task runs carry its id where requests carry theirs."""
    request_id_var.set(task_id)
