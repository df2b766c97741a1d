"""Kinds of jobs: the plug-ins the executor runs, registered by the feature owning each table."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sampler.jobs.models import Job, JobStatus


class JobCancelled(Exception):
    """The row is no longer this worker's to run: cancelled, or taken over after a stall."""


class JobRetryLater(Exception):
    """Something outside the job is down for now (a model server, a rate limit): the executor
    puts the job back in its queue, published again after ``delay`` seconds, until its attempts
    are spent; then it fails with this message."""

    def __init__(self, message: str, *, delay: float = 0.0) -> None:
        super().__init__(message)
        self.delay = delay


@dataclass
class JobContext:
    """What a kind's ``execute`` gets: the claimed row and the means to report on it."""

    kind: JobKind
    job: Job
    token: str
    worker: str
    # What the caller passes to the kind (the command line: resume, a progress printer).
    options: dict = field(default_factory=dict)
    # Set by the heartbeat thread when the row stopped being ours (cancelled, taken over).
    lost: threading.Event = field(default_factory=threading.Event)
    # Set once this run's failure is logged: a failure written once more, after a time limit
    # cut the first write off, is not logged again.
    failure_logged: bool = False

    def _mine(self):
        return self.kind.model.objects.filter(
            pk=self.job.pk, status=JobStatus.RUNNING, publish_token=self.token
        )

    def holds(self, *, lock: bool = False) -> bool:
        """Whether the row is still this worker's to run (running under its token). ``lock``:
        the row stays locked until the caller's transaction ends, so that neither a takeover
        nor a cancellation lands before what the caller does in it (move its output in place)."""
        rows = self._mine()
        if lock:
            rows = rows.select_for_update(of=("self",))
        return rows.values_list("pk", flat=True).first() is not None

    def check(self) -> None:
        """Raise ``JobCancelled`` when the row is no longer this worker's to run."""
        if self.lost.is_set():
            raise JobCancelled(f"{self.kind.name} job {self.job.pk} was cancelled.")

    def heartbeat(self, **fields) -> None:
        """Refresh the heartbeat (and store ``fields``, e.g. progress); ``JobCancelled`` when
        the row was cancelled or taken over meanwhile."""
        if not self._mine().update(heartbeat_at=timezone.now(), **fields):
            self.lost.set()
        self.check()

    def succeed(self, **fields) -> bool:
        """Mark the row succeeded (inside the caller's transaction, with its results); False
        when it was cancelled or taken over, in which case the caller should roll back."""
        now = timezone.now()
        done = self._mine().update(
            status=JobStatus.SUCCEEDED, finished_at=now, heartbeat_at=now, error="", **fields
        )
        return bool(done)


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job.

    ``execute`` does the work for a claimed row and makes its effects idempotent (a row may be
    run again after its worker died); it may mark the row succeeded itself, inside the
    transaction that stores its results (``JobContext.succeed``), else the executor does when
    it returns. ``matches`` tells apart kinds that share a table (e.g. generation jobs that
    prepare a ranking task). ``on_given_up`` runs once the row failed for good or was cancelled;
    ``on_retry`` when it is queued again by a retry, in that transaction (it undoes what
    ``on_given_up`` did).
    """

    name: str
    model: type[Job]
    execute: Callable[[JobContext], None]
    queue: str | Callable[[Job], str]
    max_attempts: int = field(default_factory=lambda: settings.JOB_MAX_ATTEMPTS)
    # Seconds before the run is interrupted (Celery soft time limit; the hard one 30 s later);
    # None or 0: as long as it takes.
    time_limit: int | None = None
    matches: Callable[[Job], bool] | None = None
    # ``matches`` as a filter on the table, where it is given (counts by kind, in the database).
    rows: Q | None = None
    on_given_up: Callable[[Job], None] | None = None
    on_retry: Callable[[Job], None] | None = None

    def queue_for(self, job: Job) -> str:
        return self.queue(job) if callable(self.queue) else str(self.queue)


_kinds: dict[str, JobKind] = {}
_lock = threading.Lock()


def job_kind_register(kind: JobKind) -> JobKind:
    """Register ``kind`` (idempotent for the same name and table)."""
    with _lock:
        known = _kinds.get(kind.name)
        if known is not None and known.model is not kind.model:
            raise ValueError(f"Job kind {kind.name!r} is registered for {known.model.__name__}.")
        _kinds[kind.name] = kind
    return kind


def job_kind_named(name: str) -> JobKind:
    """The kind registered as ``name``; none: ``LookupError``, saying
    ``job_kind_missing_message``."""
    try:
        return _kinds[name]
    except KeyError:
        raise LookupError(job_kind_missing_message(name)) from None


def job_kind_missing_message(name: str) -> str:
    """What the jobs API and ``retry_job`` say of a kind that is not registered, the kinds
    that are listed after it."""
    names = ", ".join(sorted(_kinds))
    return f"No kind of job named {name!r}. Kinds: {names}."


def job_missing_message(kind: str) -> str:
    """What the jobs API and ``retry_job`` say of an id that names no job of ``kind``: worded as
    the kind's own API words its missing rows ("No generation job with that id.", config.api)."""
    return f"No {kind.replace('_', ' ')} job with that id."


def job_kind_of(job: Job) -> JobKind:
    """The kind that runs ``job``: the first registered for its table whose ``matches`` accepts
    it, else the one without ``matches``."""
    fallback = None
    for kind in _kinds.values():
        if not isinstance(job, kind.model):
            continue
        if kind.matches is None:
            fallback = fallback or kind
        elif kind.matches(job):
            return kind
    if fallback is None:
        raise LookupError(f"No job kind is registered for {type(job).__name__}.")
    return fallback


def job_kinds() -> list[JobKind]:
    return list(_kinds.values())


def job_models() -> list[type[Job]]:
    """Every table holding jobs, once each."""
    models: list[type[Job]] = []
    for kind in _kinds.values():
        if kind.model not in models:
            models.append(kind.model)
    return models
