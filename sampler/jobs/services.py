"""The run executor: publish, claim, heartbeat, finish, fail, cancel and retry any job.

Delivery is at least once and effects are exactly once: every publication gives the row a new
token and the worker runs only a message carrying the row's current token, inside a claim that
locks the row; results are stored under constraints (one sample per job and index, one result
per attack and run), so a job run twice stores its results once.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import NoReturn

from billiard.common import terminate_handler_fired
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from config.celery import enqueue, unreachable_note
from config.text import storable_text
from sampler.jobs.kinds import (
    JobCancelled,
    JobContext,
    JobKind,
    JobRetryLater,
    job_kind_named,
    job_kind_of,
    job_models,
)
from sampler.jobs.models import FINISHED, Job, JobStatus

logger = logging.getLogger(__name__)

RUN_TASK = "sampler.jobs.tasks.run_job"
ERROR_LIMIT = 5000
# Why a job run inside another (``job_run_inline``) failed when that job met its time limit.
INSIDE_TIME_LIMIT = "Stopped: the job it ran inside ran past its time limit."
# Database trouble that is worth trying again: the job goes back to its queue.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


class JobError(Exception):
    """A failure whose message is the whole story (shown as the job's error without a trace)."""


class JobRefused(JobError):
    """A request refused for what it asks (a prompt longer than the model's context, a turn its
    engine cannot write): the job fails with the reason, and asked again as it is, it would be
    refused again. A job running it inside its own (``raise_refused``) gets it raised once it
    is recorded, to record that failure as its own."""


@dataclass
class Publication:
    """What became of publishing a job; known once the transaction committed."""

    job_id: int
    queue: str
    sent: bool = False
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)

    def unreachable_note(self, what: str) -> str:
        """What a command says of ``what`` (e.g. "Run 3") when the job queue did not take it."""
        return unreachable_note(what)


def worker_name() -> str:
    """This process, as recorded on the rows it runs: ``host/pid``."""
    return f"{socket.gethostname()}/{os.getpid()}"[:200]


def worker_stopping() -> bool:
    """Whether this process is being stopped by its worker: a Celery pool process that its
    worker's cold shutdown (SIGQUIT, a second Ctrl+C; `make run` stopped) sent a TERM, which
    the pool's own handler turns into a ``SystemExit`` raised wherever the job was (the job's
    cleanup may raise something else as that unwinds: whatever is raised then, the job was
    stopped, not failed)."""
    return terminate_handler_fired()


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt) or worker_stopping():
        return "Interrupted; retry it to resume."
    if isinstance(error, JobError):
        return str(error)
    if isinstance(error, SoftTimeLimitExceeded):
        return "It ran past its time limit and was stopped."
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            return " ".join(
                f"{key}: {' '.join(values)}" for key, values in error.message_dict.items()
            )
        return " ".join(error.messages)
    trace = "".join(traceback.format_exception(error)[-3:])
    return f"{type(error).__name__}: {error}\n{trace}"


# ---- publishing -------------------------------------------------------------------------------


def job_enqueue(*, job: Job, countdown: float = 0.0) -> Publication:
    """Publish ``job`` to its kind's queue with a fresh token, once the transaction commits
    (to be run no sooner than ``countdown`` seconds later).

    A broker that is down leaves the row queued and unpublished (``Publication.failed`` says
    so after the commit); the outbox (``jobs_tick``) publishes it once the broker is back.

    ``queued_at`` is when it is queued from: ``countdown`` seconds from now, so that a job
    waiting out a retry delay is neither batched nor published again before then, and counts
    behind the jobs queued before it is due.

    It is a new wait in the queue: the outbox's republish delay starts again from
    ``JOB_REPUBLISH_AFTER`` (the copies an earlier wait needed say nothing of this one).
    """
    job.queued_at = timezone.now() + timedelta(seconds=countdown)
    return _publish_again(job=job, countdown=countdown, new_wait=True)


def _publish_again(*, job: Job, countdown: float = 0.0, new_wait: bool = False) -> Publication:
    """A fresh token and a new message (at the end of the broker's queue); the row keeps its
    ``queued_at``, by which jobs ahead are counted and generation batches are picked.

    ``new_wait``: the job was taken off its queue since its last publication (a worker claimed
    it) or is queued anew, so the count of publications that sets the outbox's backoff starts
    again. The outbox's own copies of a message that keeps waiting leave it counting (its delay
    keeps doubling); a copy the broker refused counts nothing either way, and is sent again on
    the next tick as an unpublished row.

    A copy of a message that keeps waiting leaves the row published until it is sent (then
    it is published anew) or refused (then it is not): pages polling the job never say the
    job queue is unreachable while it is not."""
    kind = job_kind_of(job)
    queue = kind.queue_for(job)
    token = uuid.uuid4().hex
    fields = {"queue": queue, "publish_token": token}
    if new_wait:
        fields["publish_count"] = job.publish_count = 0
        fields["published_at"] = job.published_at = None
    type(job).objects.filter(pk=job.pk).update(queued_at=job.queued_at, **fields)
    job.queue, job.publish_token = queue, token
    return _publish(kind, job, token, queue, countdown=countdown)


def _publish(
    kind: JobKind, job: Job, token: str, queue: str, *, countdown: float = 0.0
) -> Publication:
    publication = Publication(job_id=job.pk, queue=queue)
    model = type(job)
    options = {}
    if kind.time_limit:
        options = {"soft_time_limit": kind.time_limit, "time_limit": kind.time_limit + 30}
    if countdown > 0:
        options["countdown"] = countdown

    def sent() -> None:
        publication.sent = True
        # The row in hand says so too: a page that shows it at once tells it is published.
        job.published_at = timezone.now()
        model.objects.filter(pk=job.pk, publish_token=token).update(
            published_at=job.published_at, publish_count=F("publish_count") + 1
        )

    def failed(error: BaseException) -> None:
        publication.error = f"The job queue is unreachable ({type(error).__name__}: {error})."
        # No copy of this token's message is on its way: the outbox sends one on its next tick.
        job.published_at = None
        model.objects.filter(pk=job.pk, publish_token=token).update(published_at=None)

    enqueue(
        RUN_TASK,
        args=(kind.name, job.pk, token),
        queue=queue,
        options=options,
        on_sent=sent,
        on_failure=failed,
    )
    return publication


def _republish_delay(publish_count: int) -> timedelta:
    """How long a published job may wait in its queue before it is published again: doubling
    with each publication, so a long queue is not flooded with copies."""
    base = settings.JOB_REPUBLISH_AFTER
    return timedelta(seconds=min(settings.JOB_REPUBLISH_MAX, base * 2 ** max(0, publish_count - 1)))


def _republish_due(now: datetime) -> Q:
    """Published rows whose wait since their last publication passed their republish delay,
    in the query: a tick's batch then holds only rows that are due, and rows waiting within
    their delay never crowd out a lost publication behind them."""
    ceiling = timedelta(seconds=settings.JOB_REPUBLISH_MAX)
    due = Q(publish_count__lte=1, published_at__lt=now - _republish_delay(1))
    count = 2
    while count < 64 and _republish_delay(count - 1) < ceiling:
        due |= Q(publish_count=count, published_at__lt=now - _republish_delay(count))
        count += 1
    return due | Q(publish_count__gte=count, published_at__lt=now - _republish_delay(count))


def _lost_publications(model: type[Job], now: datetime) -> list[Job]:
    grace = now - timedelta(seconds=settings.JOB_PUBLISH_GRACE)
    candidates = model.objects.filter(status=JobStatus.QUEUED).exclude(queue="")
    # A job waiting out a retry delay (queued from later) has its message on the way.
    candidates = candidates.exclude(queued_at__gt=now).filter(
        Q(published_at__isnull=True, queued_at__lt=grace) | _republish_due(now)
    )
    return list(candidates.order_by("queued_at")[: settings.JOB_TICK_BATCH])


# ---- claiming and running ---------------------------------------------------------------------


def _heartbeat_is_stale(job: Job, now: datetime) -> bool:
    stale_before = now - timedelta(seconds=settings.JOB_STALE_AFTER)
    return job.heartbeat_at is None or job.heartbeat_at < stale_before


def _has_stalled(job: Job, now: datetime) -> bool:
    """Whether the worker of running ``job`` stopped by ``now``: no heartbeat for
    ``JOB_STALE_AFTER``, or two missed from a process that no longer exists on this host."""
    late = now - timedelta(seconds=2 * settings.JOB_HEARTBEAT_SECONDS)
    if job.heartbeat_at is not None and job.heartbeat_at >= late:
        return False
    return _heartbeat_is_stale(job, now) or _worker_is_dead_here(job.worker)


def _worker_is_dead_here(worker: str) -> bool:
    """True when ``worker`` (``host/pid``) ran on this host and that process is gone: a
    killed pool process whose job the broker handed straight back is taken over at once."""
    host, _, pid = worker.rpartition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def job_claim(*, kind: JobKind, job_id: int, token: str | None, worker: str) -> Job | None:
    """Mark the row running for ``worker``; None when this message has nothing to do.

    ``token`` None claims the row for the calling process (a command-line run): any current
    token is replaced. A running row is taken over only when its heartbeat went stale, under a
    new token: the worker that held it (stalled, not dead) can then neither beat for it nor
    finish it, and stops at its next check.
    """
    now = timezone.now()
    with transaction.atomic():
        job = kind.model.objects.select_for_update(of=("self",)).filter(pk=job_id).first()
        if job is None:
            logger.warning("%s job %s no longer exists", kind.name, job_id)
            return None
        if token is not None and job.publish_token != token:
            logger.info("%s job %s: a stale message (published again since)", kind.name, job_id)
            return None
        taken_over = job.status == JobStatus.RUNNING
        if taken_over:
            if not _heartbeat_is_stale(job, now) and not _worker_is_dead_here(job.worker):
                logger.info("%s job %s is running on %s", kind.name, job_id, job.worker)
                return None
        elif job.status != JobStatus.QUEUED and not (
            token is None and job.status == JobStatus.FAILED
        ):
            return None
        # A person running it by hand (token None) is not held to the attempt budget.
        if token is not None and job.attempts >= kind.max_attempts:
            _fail_locked(
                kind,
                job,
                f"Gave up after {job.attempts} attempts: the worker stopped each time.",
                now,
            )
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        job.worker = worker[:200]
        job.error = ""
        update = ["status", "attempts", "started_at", "heartbeat_at", "worker", "error"]
        if token is None:
            job.publish_token, job.queue = uuid.uuid4().hex, ""
            update += ["publish_token", "queue"]
        elif taken_over:
            # The row is this worker's alone from now on (its message, delivered again, is stale).
            job.publish_token = uuid.uuid4().hex
            update.append("publish_token")
        job.save(update_fields=update)
    return job


class _Heartbeat:
    """Refreshes the row's heartbeat from a thread while ``execute`` runs (a model's forward
    pass gives no chance to do it in line)."""

    def __init__(self, context: JobContext) -> None:
        self.context = context
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="job-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join(timeout=settings.JOB_HEARTBEAT_SECONDS + 5)

    def _beat(self) -> None:
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_SECONDS):
                try:
                    if not self.context._mine().update(heartbeat_at=timezone.now()):
                        self._check_lost()
                except DatabaseError as error:
                    logger.warning("Heartbeat of job %s failed: %s", self.context.job.pk, error)
                    # A connection the server dropped (a restart, a network cut) stays broken:
                    # the next beat opens a new one rather than failing until the job ends.
                    with contextlib.suppress(DatabaseError):
                        connection.close()
        finally:
            connection.close()

    def _check_lost(self) -> None:
        # A row this connection cannot see (another transaction created it) is not lost.
        row = (
            self.context.kind.model.objects.filter(pk=self.context.job.pk)
            .values("status", "publish_token")
            .first()
        )
        if row is not None and (
            row["status"] != JobStatus.RUNNING or row["publish_token"] != self.context.token
        ):
            self.context.lost.set()


def job_execute(
    *,
    kind_name: str,
    job_id: int,
    token: str | None,
    worker: str = "",
    options: dict | None = None,
    reraise: bool = False,
) -> Job | None:
    """Claim and run one job; every outcome is recorded on its row.

    Cancelled: left cancelled. Transient database trouble: queued again. Stopped by its worker
    (``worker_stopping``: its cold shutdown): handed back to its queue, its attempt not counted
    (run with no ``token``, inside another job: queued again unpublished, for that job to run
    when it resumes), and the stop raised on for the process to end. Any other error,
    a time limit included: failed with the reason (``on_given_up`` then runs); ``reraise``
    raises it again afterwards (the command line reports it), and so does the option
    ``raise_refused`` for ``JobRefused`` (a job running this one inside its own). A time limit
    met in a run with no ``token`` (run inside another job) is that job's: this one is failed
    saying so, and the limit raised on for that job to stop with it.

    The time limit may land while the outcome is being recorded (Celery's soft limit is raised
    wherever the worker is): the outcome, a failure, a return to the queue or the success the
    executor records for a kind that returned without recording it, is then recorded once more
    (``_recorded``), so that the row is not left running for the sweeper to queue again as
    stalled (the job run again, its reason lost, or its finished work done twice). The limit is
    then raised on where a limit met in the job would be: run inside another job, for that job
    to stop with it. A limit that cut off a query of the run (its answer unread: a commit of the
    kind's results with its success) leaves the connection taking no other command: it is
    replaced before the outcome is recorded (``_drop_unusable_connection``), and the database
    error Django raises as the limit unwinds that transaction counts as the limit.
    """
    kind = job_kind_named(kind_name)
    worker = worker or worker_name()
    job = job_claim(kind=kind, job_id=job_id, token=token, worker=worker)
    if job is None:
        return None
    context = JobContext(
        kind=kind, job=job, token=job.publish_token, worker=worker, options=options or {}
    )
    try:
        with _Heartbeat(context):
            kind.execute(context)
    except BaseException as raised:
        error = _limit_behind(raised)
        if worker_stopping():
            # Stopped, not failed: back in its queue at once, its attempt not counted, for the
            # next worker (a training run resumes from its checkpoint). A job run inside another
            # (no token) has no queue of its own: it is queued again unpublished, and the job
            # it ran inside, handed back in turn, runs it when it resumes.
            _recorded_after(error, partial(job_hand_back, context, publish=token is not None))
            logger.warning("%s job %s is back in its queue: its worker stopped", kind.name, job_id)
            raise
        if isinstance(error, SoftTimeLimitExceeded) and token is None:
            # Run here inside another job (the command line has no time limit): the limit is
            # that job's Celery message's, so that job stops with it, as at a limit of its own.
            _recorded_after(
                error, partial(job_fail, job=job, error=INSIDE_TIME_LIMIT, token=context.token)
            )
            _raise_again(error, raised)
        if isinstance(error, JobRetryLater):
            # A caller running it inside its own job retries that job instead.
            passed_on = bool(context.options.get("raise_retry_later"))
        elif isinstance(error, JobRefused) and context.options.get("raise_refused"):
            # A caller running it inside its own job records the refusal as its own.
            passed_on = True
        else:
            # The command line reports the failure; an interrupt is the process's to handle.
            passed_on = not isinstance(error, (JobCancelled, *TRANSIENT_ERRORS)) and (
                reraise or not isinstance(error, Exception)
            )
        limit = _recorded_after(error, partial(_record_error, context, error, log=not passed_on))
        if limit is not None and token is None:
            raise limit from error
        if passed_on:
            _raise_again(error, raised)
    else:
        # The success of a kind that did not record it itself, shielded like a failure.
        limit = _recorded(context.succeed)
        if limit is not None and token is None:
            raise limit
    return kind.model.objects.get(pk=job_id)


def _recorded(record: Callable[[], object]) -> SoftTimeLimitExceeded | None:
    """Record a run's outcome with ``record``. The worker's time limit met meanwhile cuts it
    off anywhere (its transaction rolled back, or committed and the rest not done): it runs
    once more, whole, and the limit is returned for the caller to raise on where due. Celery
    raises the soft limit once a run (the hard limit, later, ends the process), and every
    ``record`` leaves a row that is no longer running under the run's token as it is."""
    try:
        record()
    except SoftTimeLimitExceeded as limit:
        if not connection.in_atomic_block:
            # A query cut off halfway (its answer not read) may leave it unusable.
            with contextlib.suppress(DatabaseError):
                connection.close()
        record()
        return limit
    return None


def _recorded_after(
    error: BaseException | None, record: Callable[[], object]
) -> SoftTimeLimitExceeded | None:
    """``_recorded`` for a run that raised ``error``: the connection is replaced first where
    the run left it unusable (``_drop_unusable_connection``; database trouble, a transient
    ``error``, is left to ``record`` to log before the database is touched again; None: checked
    whatever was raised), inside the shield, so that a time limit landing as the connection is
    checked is met like one landing in the write."""

    def on_usable_connection() -> None:
        if not isinstance(error, TRANSIENT_ERRORS):
            _drop_unusable_connection()
        record()

    return _recorded(on_usable_connection)


def _limit_behind(error: BaseException) -> BaseException:
    """``error``, or the worker's time limit it was raised while handling: a database error
    raised as the limit unwound a transaction whose commit it cut off (Django then restoring
    autocommit on a connection still busy with the commit) is the limit, as the run's outcome."""
    if not isinstance(error, DatabaseError):
        return error
    handled = error.__context__  # the limit, or the driver's error raised while it unwound
    for _ in range(3):
        if handled is None or isinstance(handled, SoftTimeLimitExceeded):
            break
        handled = handled.__context__
    return handled if isinstance(handled, SoftTimeLimitExceeded) else error


def _raise_again(error: BaseException, raised: BaseException) -> NoReturn:
    """Raise ``error`` on: ``raised`` itself, or the time limit found behind it."""
    if error is raised:
        raise raised
    raise error from raised


def _drop_unusable_connection() -> None:
    """Close this thread's connection when the run left it unusable, so that its outcome is
    recorded on a new one: the worker's time limit met while a query ran (its answer not read:
    a transaction's commit, the kind's success with it, or a write in autocommit) leaves it
    taking no other command, and recording on it would fail too, the row left running for the
    sweeper. Not inside a transaction (one open around this run, which keeps its connection)."""
    if connection.in_atomic_block or connection.connection is None:
        return
    if not connection.is_usable():
        with contextlib.suppress(DatabaseError):
            connection.close()


def _record_error(context: JobContext, error: BaseException, *, log: bool = True) -> None:
    """Record on ``context``'s row what ``error`` means for it. Cancelled: left cancelled.
    Transient database trouble: queued again. ``JobRetryLater``: queued again after its delay.
    Anything else: failed with the reason. A failure is logged (unless ``log`` is False: the
    caller tells it) in one record, with the job's id and the reason, inside the transaction
    that fails the row, before it commits: a time limit landing as it commits, or just after,
    cannot leave it unsaid (the write made once more then finds the job failed, and would
    log nothing). Once said, it is not said again when a time limit cut the write off and it
    is made once more (``_recorded``)."""
    kind, job_id = context.kind, context.job.pk

    def said(reason: str, exc_info: BaseException | None = None) -> None:
        if not log or context.failure_logged:
            return
        context.failure_logged = True
        logger.error("%s job %s failed: %s", kind.name, job_id, reason, exc_info=exc_info)

    if isinstance(error, JobCancelled):
        logger.info("%s job %s stopped: %s", kind.name, job_id, "no longer ours")
    elif isinstance(error, TRANSIENT_ERRORS):
        # Said before the database is touched again: it may still be down.
        logger.warning("%s job %s hit database trouble: %s", kind.name, job_id, error)
        if not connection.in_atomic_block:
            # A connection the server dropped stays broken (nothing here opens a new one, as a
            # request's end does): recording the outcome on it would fail as well, and leave
            # the row running, as if a process still ran it.
            with contextlib.suppress(DatabaseError):
                connection.close_if_unusable_or_obsolete()
        _requeue_or_fail(
            kind, job_id, token=context.token, reason=f"Database trouble: {error}", said=said
        )
    elif isinstance(error, JobRetryLater):
        _requeue_or_fail(
            kind, job_id, token=context.token, reason=str(error), delay=error.delay, said=said
        )
    else:
        description = _describe(error)
        if isinstance(error, JobError | ValidationError):
            # A failure the job explains itself (a model server's key not set, bad data): its
            # message is all there is to it, a traceback would bury it.
            on_failed = partial(said, description)
        else:
            on_failed = partial(said, f"{type(error).__name__}: {error}", error)
        job_fail(job=context.job, error=description, token=context.token, on_failed=on_failed)


@contextmanager
def job_batch(*, context: JobContext, candidates: list[Job]) -> Iterator[list[JobContext]]:
    """Claim for this worker the ``candidates`` (queued rows of the same kind, published) that
    it can run together with ``context``'s job, and keep their heartbeats while the block runs.

    Yields their contexts (what the block must finish one by one, each inside
    ``job_partner_step``, so that one partner's error is its own). A row claimed here is no
    longer run by its own message (it is running, then finished). When the block raises, every
    claimed row it did not finish goes back to its queue, its attempt not counted, and the
    block's error is raised on. The worker's time limit met while they are handed back (the
    block raised something else) cuts off one hand-back, which is made once more
    (``_recorded``), and a connection the block left unusable (the limit met in one of its
    queries) is replaced before they are: no partner is left running for the sweeper to find.
    """
    claimed: list[JobContext] = []
    for candidate in candidates:
        if candidate.pk == context.job.pk or job_kind_of(candidate) is not context.kind:
            continue
        job = job_claim(
            kind=context.kind,
            job_id=candidate.pk,
            token=candidate.publish_token,
            worker=context.worker,
        )
        if job is not None:
            claimed.append(
                JobContext(
                    kind=context.kind, job=job, token=job.publish_token, worker=context.worker
                )
            )
    with ExitStack() as heartbeats:
        for partner in claimed:
            heartbeats.enter_context(_Heartbeat(partner))
        try:
            yield claimed
        except BaseException:
            for partner in claimed:
                _recorded_after(None, partial(job_hand_back, partner))
            raise


@contextmanager
def job_partner_step(*, context: JobContext) -> Iterator[None]:
    """Run a batch partner's own step (storing its results) so that an error it raises is
    recorded on that partner alone, as ``job_execute`` records a job's (failed with the reason,
    queued again when it is worth trying again, left alone when cancelled), and goes no further:
    the job that claimed it and the other partners carry on. An interrupt is raised on, and so
    is the worker's time limit: it is the claiming job's, which stops with it (``job_batch``
    hands this partner back)."""
    try:
        yield
    except SoftTimeLimitExceeded:
        raise
    except Exception as error:
        _record_error(context, error)


def job_hand_back(context: JobContext, *, publish: bool = True) -> None:
    """A batch partner that did not run: queued again, its attempt not counted, in the place it
    had (its ``queued_at``), published at once (its own message puts it first in whatever batch
    it then runs in, so it is tried). A partner no longer running under ``context``'s token
    (handed back already, finished, cancelled) is left as it is, so it may be made again; one
    whose message did not leave (the broker down, or a time limit met as it was sent) is
    published by the outbox. ``publish`` False: a job run inside another, which has no queue
    of its own (the outbox leaves it alone), is only queued again, for that job to run."""
    with transaction.atomic():
        job = (
            context.kind.model.objects.select_for_update(of=("self",))
            .filter(pk=context.job.pk, status=JobStatus.RUNNING, publish_token=context.token)
            .first()
        )
        if job is None:
            return
        job.status, job.attempts = JobStatus.QUEUED, max(0, job.attempts - 1)
        job.save(update_fields=["status", "attempts"])
        if publish:
            _publish_again(job=job, new_wait=True)


def job_run_inline(
    *, job: Job, raise_retry_later: bool = False, raise_refused: bool = False
) -> Job | None:
    """Run ``job`` (of any kind) in this process (the command line, or inside another job),
    without a broker, through the executor as a worker would. ``raise_retry_later``: when it
    meets something that is down for now, raise that ``JobRetryLater`` after recording it, so
    the job running this one goes back to its queue.
    ``raise_refused``: when its request is refused for what it asks, raise that ``JobRefused``
    after recording it, so the job running this one knows that asking again would not help.
    The time limit of the job running this one, met here, is raised on (this job failed saying
    so): that job stops with it."""
    return job_execute(
        kind_name=job_kind_of(job).name,
        job_id=job.pk,
        token=None,
        options={"raise_retry_later": raise_retry_later, "raise_refused": raise_refused},
    )


# ---- finishing, failing, cancelling, retrying -------------------------------------------------


def _error_text(error: str) -> str:
    """A reason as the job's row can keep it: cut to ``ERROR_LIMIT``, and storable (a server's
    or an exception's message may carry a NUL, which PostgreSQL refuses)."""
    return storable_text(error)[:ERROR_LIMIT]


def _fail_locked(kind: JobKind, job: Job, error: str, now: datetime) -> None:
    job.status, job.error, job.finished_at = JobStatus.FAILED, _error_text(error), now
    job.save(update_fields=["status", "error", "finished_at"])
    if kind.on_given_up is not None:
        kind.on_given_up(job)


def job_fail(
    *,
    job: Job,
    error: str,
    token: str | None = None,
    on_failed: Callable[[], object] | None = None,
) -> bool:
    """Mark an unfinished job failed (only the run holding ``token``, when given).
    ``on_failed`` runs once the row is failed, inside the transaction, before it commits (a
    log record of the failure: said after the commit, a time limit landing as it commits
    would leave it unsaid)."""
    kind = job_kind_of(job)
    with transaction.atomic():
        row = kind.model.objects.select_for_update(of=("self",)).filter(pk=job.pk).first()
        if row is None or row.is_finished:
            return False
        if token is not None and row.publish_token != token:
            return False
        _fail_locked(kind, row, error, timezone.now())
        if on_failed is not None:
            on_failed()
    return True


def _requeue_or_fail(
    kind: JobKind,
    job_id: int,
    *,
    token: str | None,
    reason: str,
    delay: float = 0.0,
    stalled_by: datetime | None = None,
    said: Callable[[str], object] | None = None,
) -> None:
    """Queue the running job again (after ``delay`` seconds), or fail it past its attempts.
    ``stalled_by``: only if its worker has stalled by then, as the locked row says (a heartbeat
    may have landed since the row was read). The outcome is logged as it is written, inside
    its transaction: a failure before the commit (by ``said`` with the reason when given:
    the run's own record, said once however often the write is made), a retry as the commit
    lands, before its publication."""
    with transaction.atomic():
        job = kind.model.objects.select_for_update(of=("self",)).filter(pk=job_id).first()
        if job is None or job.status != JobStatus.RUNNING:
            return
        if token is not None and job.publish_token != token:
            return
        if stalled_by is not None and not _has_stalled(job, stalled_by):
            return
        # Run here, not from a queue (``manage.py generate``), nobody would try it again: it
        # fails at once, as one past its attempts does.
        failed = not job.queue or job.attempts >= kind.max_attempts
        if failed:
            if job.queue:
                reason = f"{reason} Gave up after {job.attempts} attempts."
            _fail_locked(kind, job, reason, timezone.now())
            if said is None:
                logger.error("%s job %s failed: %s", kind.name, job_id, reason)
            else:
                said(reason)
        else:
            job.status, job.error = JobStatus.QUEUED, _error_text(reason)
            job.save(update_fields=["status", "error"])
            # Said as the write commits, before the publication that follows it: a time limit
            # landing in that (a slow broker) would otherwise leave it unsaid, the write made
            # once more finding the job queued already.
            transaction.on_commit(
                functools.partial(
                    logger.warning, "%s job %s will be tried again: %s", kind.name, job_id, reason
                )
            )
            job_enqueue(job=job, countdown=delay)


def job_cancel(*, job: Job) -> Job:
    """Stop a queued or running job; a worker running it stops at its next check."""
    kind = job_kind_of(job)
    with transaction.atomic():
        row = kind.model.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if row.is_active:
            row.status, row.finished_at = JobStatus.CANCELLED, timezone.now()
            row.save(update_fields=["status", "finished_at"])
            if kind.on_given_up is not None:
                kind.on_given_up(row)
    return row


def job_cancel_refusal(*, job: Job) -> str | None:
    """Why a cancel of ``job``, as ``job_cancel`` returned it, was refused: it had ended by
    itself (None: it is cancelled, now or before). The API's 409 and the pages say it alike."""
    if job.status in {JobStatus.SUCCEEDED, JobStatus.FAILED}:
        return f"The job has already {job.status}: nothing to cancel."
    return None


def job_retry(*, job: Job) -> Publication:
    """Queue a failed or cancelled job again with a fresh attempt budget (a training run
    resumes from its last checkpoint). What the ended attempt left goes, for every kind: its
    start, heartbeat, end, error and worker, and its ``progress`` where the kind keeps one;
    the claim that runs it again records its own start."""
    kind = job_kind_of(job)
    with transaction.atomic():
        row = kind.model.objects.select_for_update(of=("self",)).get(pk=job.pk)
        if row.status not in {JobStatus.FAILED, JobStatus.CANCELLED}:
            raise ValidationError(
                f"Only failed or cancelled jobs can be retried; this one is {row.status}."
            )
        row.status, row.attempts, row.error = JobStatus.QUEUED, 0, ""
        row.started_at, row.heartbeat_at, row.finished_at, row.worker = None, None, None, ""
        cleared = [*_ATTEMPT_FIELDS]
        if _keeps_progress(kind.model):
            row.progress = 0.0
            cleared.append("progress")
        row.save(update_fields=cleared)
        if kind.on_retry is not None:
            kind.on_retry(row)
        return job_enqueue(job=row)


# What a job's row records of one run of it, which a retry clears.
_ATTEMPT_FIELDS = (
    "status",
    "attempts",
    "error",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "worker",
)


def _keeps_progress(model: type[Job]) -> bool:
    """Whether jobs of ``model`` record how far they got (a ``progress`` fraction)."""
    return any(field.name == "progress" for field in model._meta.concrete_fields)


# ---- the outbox and the sweeper ---------------------------------------------------------------


@dataclass
class TickReport:
    republished: int = 0
    requeued: int = 0
    failed: int = 0


def jobs_tick(*, now: datetime | None = None) -> TickReport:
    """Publish again queued jobs whose message was lost, and queue again (or fail, past their
    attempts) running jobs whose worker stopped heartbeating. Never touches a job that waits in
    its queue within its republish delay, and never fails one that waits."""
    now = now or timezone.now()
    report = TickReport()
    for model in job_models():
        for job in _lost_publications(model, now):
            with transaction.atomic():
                row = model.objects.select_for_update(of=("self",)).filter(pk=job.pk).first()
                if row is None or row.status != JobStatus.QUEUED:
                    continue
                _publish_again(job=row)
                report.republished += 1
        # Two missed heartbeats from a process that no longer exists on this host are enough.
        late = now - timedelta(seconds=2 * settings.JOB_HEARTBEAT_SECONDS)
        stalled = model.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=late)
        for job in stalled.order_by("heartbeat_at")[: settings.JOB_TICK_BATCH]:
            if not _has_stalled(job, now):
                continue
            kind = job_kind_of(job)
            _requeue_or_fail(
                kind,
                job.pk,
                token=job.publish_token,
                reason=f"Its worker ({job.worker or 'unknown'}) stopped responding.",
                stalled_by=now,
            )
            job.refresh_from_db(fields=["status"])
            if job.status == JobStatus.FAILED:
                report.failed += 1
            elif job.status == JobStatus.QUEUED:
                report.requeued += 1
    if report.republished or report.requeued or report.failed:
        logger.info("Jobs tick: %s", report)
    return report


__all__ = [
    "FINISHED",
    "JobCancelled",
    "JobContext",
    "JobError",
    "Publication",
    "job_batch",
    "job_cancel",
    "job_claim",
    "job_enqueue",
    "job_execute",
    "job_fail",
    "job_partner_step",
    "job_retry",
    "job_run_inline",
    "jobs_tick",
    "worker_name",
    "worker_stopping",
]
