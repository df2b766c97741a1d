"""What every job's admin page shares: lifecycle columns and retry / cancel actions."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from sampler.jobs.services import job_cancel, job_retry

LIFECYCLE_FIELDS = (
    "status",
    "queue",
    "attempts",
    "worker",
    "queued_at",
    "published_at",
    "publish_count",
    # The queued message runs the job only while it carries this token (job_enqueue).
    "publish_token",
    "started_at",
    "heartbeat_at",
    "finished_at",
    "error",
)


class JobAdminMixin:
    """Mixed into a job model's ModelAdmin: read-only lifecycle, the two actions, and no add
    page: a job is made by the page, API or command that checks its inputs and queues it; a
    row added here would skip both, and no worker would be told of it."""

    actions = ["retry_jobs", "cancel_jobs"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Retry the selected failed or cancelled jobs")
    def retry_jobs(self, request, queryset) -> None:
        retried, refused, unpublished = 0, 0, 0
        for job in queryset:
            try:
                publication = job_retry(job=job)
            except ValidationError:
                refused += 1
                continue
            retried += 1
            unpublished += publication.failed
        self.message_user(request, f"{retried} queued again, {refused} not failed or cancelled.")
        if unpublished:
            self.message_user(
                request,
                f"{unpublished} could not reach the job queue yet; they run once it is back.",
                level=messages.WARNING,
            )

    @admin.action(description="Cancel the selected queued or running jobs")
    def cancel_jobs(self, request, queryset) -> None:
        cancelled = sum(job.is_active and job_cancel(job=job).is_finished for job in queryset)
        self.message_user(request, f"{cancelled} cancelled.")
