"""The fields every background job shares; each kind's table inherits them."""

import re
from collections.abc import Iterable

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """A unit of background work whose row is the source of truth.

    ``queued -> running -> succeeded | failed | cancelled``. A row is published to its queue
    with a fresh ``publish_token`` each time (creation, re-publication by the outbox, retry);
    a worker runs only the message carrying the row's current token, so a message that arrives
    twice, or late, does nothing. While it runs, the worker refreshes ``heartbeat_at``; a running
    row whose heartbeat stopped lost its worker and is queued again (up to the kind's attempts).
    """

    Status = JobStatus

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # Empty for a job run in the calling process (the command line): never published.
    queue = models.CharField(max_length=32, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True, help_text="When it last became queued.")
    publish_token = models.CharField(max_length=32, blank=True)
    # When the broker last accepted its message; empty while no publication got through.
    published_at = models.DateTimeField(null=True, blank=True)
    publish_count = models.PositiveIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started it.")
    worker = models.CharField(max_length=200, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED

    @property
    def is_active(self) -> bool:
        return self.status in {JobStatus.QUEUED, JobStatus.RUNNING}

    @property
    def error_public(self) -> str:
        """The error as a trainer may read it (``job_error_public``); staff read ``error``."""
        return job_error_public(error=self.error)

    @property
    def error_summary(self) -> str:
        """The error as staff pages show it (``job_error_summary``: the exception's own line,
        as the jobs API answers); the traceback stays in ``error``, for the admin's record."""
        return job_error_summary(error=self.error)


INTERNAL_ERROR_MESSAGE = (
    "It failed on the server (an internal error); an admin can see the details and retry it."
)


# In place of where a model is served from (a server's URL, a weights path) in what trainers read.
HIDDEN_LOCATION = "[address shown to admins]"
# Any server's URL in an error (one its version has since moved from, too), up to the punctuation
# that ends the sentence.
URL = re.compile(r"""https?://[^\s'"<>]*[^\s'"<>.,;:)]""")


def job_error_explained(*, error: str) -> bool:
    """Whether a job's recorded error is a message written for people (a refusal, a time
    limit, bad data), not an unexpected exception, whose record carries a traceback."""
    return '  File "' not in error and "Traceback" not in error


def job_error_public(*, error: str, hidden: Iterable[str] = ()) -> str:
    """A job's error as a trainer may read it: messages written for users as they are, less the
    ``hidden`` texts (where a model is served from) and any URL (a server the version has since
    moved from, too); an unexpected exception, whose record carries a traceback naming server
    files, as one plain sentence (staff read the record itself)."""
    if not job_error_explained(error=error):
        return INTERNAL_ERROR_MESSAGE
    for text in sorted((text for text in hidden if text), key=len, reverse=True):
        error = error.replace(text, HIDDEN_LOCATION)
    return URL.sub(HIDDEN_LOCATION, error)


def job_error_summary(*, error: str) -> str:
    """A job's error without the traceback its record keeps: the exception's own line (what
    the API answers staff; the record, on the admin pages, keeps the rest)."""
    if not job_error_explained(error=error):
        return error.split("\n", 1)[0]
    return error


def job_indexes(prefix: str) -> list[models.Index]:
    """The indexes the outbox and the sweeper read (unfinished rows only); ``prefix`` keeps
    index names unique per table."""
    unfinished = Q(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
    return [
        models.Index(
            fields=["status", "queue", "queued_at"],
            condition=unfinished,
            name=f"{prefix}_unfinished",
        ),
    ]


def job_requester(related_name: str) -> models.ForeignKey:
    """Who asked for a job: optional (the system queues some), and the job and its results
    outlive the account."""
    return models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name=related_name,
    )


def progress_fraction(name: str) -> models.CheckConstraint:
    """A job's ``progress`` (where its table keeps one) stays a fraction, 0 to 1."""
    return models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name=name)
