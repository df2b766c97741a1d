"""The Celery app, its queues and every periodic schedule."""

import os
from enum import StrEnum

from celery import Celery, signals
from kombu import Exchange
from kombu import Queue as KombuQueue

from config.log import request_id_var
from config.threads import thread_caps_apply

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


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
app.conf.task_routes = {
    # Suggestions by default; bulk jobs are published to GENERATION by their service.
    "sampler.tasks.run_generation_job": {"queue": Queue.INTERACTIVE.value},
    "sampler.tasks.run_training": {"queue": Queue.TRAINING.value},
    "sampler.tasks.run_model_comparison": {"queue": Queue.GENERATION.value},
    "ranking.tasks.prepare_ranking_task": {"queue": Queue.GENERATION.value},
    "labeling.tasks.run_attack_run": {"queue": Queue.GENERATION.value},
}
# Job state lives in the database (GenerationJob, TrainingRun, DatasetExport), not in results.
app.conf.task_ignore_result = True
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
# One task at a time per worker process: generation holds a model and a CPU/GPU busy.
app.conf.worker_prefetch_multiplier = 1
app.conf.broker_connection_retry_on_startup = True
app.conf.beat_schedule = {
    # Marks generation jobs that outlived their time limit (lost worker, killed process) as
    # failed, so no job stays "running" forever.
    "sweep-stale-generation-jobs": {
        "task": "sampler.tasks.sweep_stale_generation_jobs",
        "schedule": 60.0,
    },
    # Keeps RANKING_POOL_SIZE tasks ready or being sampled, so trainers never wait.
    "fill-ranking-pool": {"task": "ranking.tasks.fill_ranking_pool", "schedule": 30.0},
    # Gives back the slots of ranking leases that ran out.
    "expire-ranking-leases": {"task": "ranking.tasks.expire_ranking_leases", "schedule": 60.0},
}

app.autodiscover_tasks()

# Worker-side hooks (operations).
# Every worker writes a heartbeat row while it consumes (sampler/workers/heartbeat.py); /readyz
# and /metrics read them.
app.steps["consumer"].add("sampler.workers.heartbeat:WorkerHeartbeatStep")


@signals.celeryd_init.connect
def _cap_threads_in_worker(**kwargs) -> None:
    """Before the worker imports anything: its pool processes inherit the cap (TORCH_THREADS)."""
    thread_caps_apply()


@signals.worker_process_init.connect
def _cap_threads_in_pool_process(**kwargs) -> None:
    """Again in each pool process, in case its parent had already started torch."""
    thread_caps_apply()


@signals.task_prerun.connect
def _log_task_id(task_id: str, **kwargs) -> None:
    """Log lines written while a task runs carry its id where requests carry theirs."""
    request_id_var.set(task_id)
