"""What every job's admin page shares: read-only rows and retry / cancel actions."""

from django.contrib import admin, messages
from django.core.exceptions import ValidationError

from sampler.jobs.services import job_cancel, job_retry


class JobAdminMixin:
    """Mixed into a job model's ModelAdmin: every field read-only, the two actions, and no add
    page. A job is made by the page, API or command that checks its inputs and queues it; a
    row added here would skip both, and no worker would be told of it. Its row is then what it
    was asked for, which a retried or resumed try reads again, and what its executor recorded
    (lifecycle, progress, log, results), which its outputs are the record of: changed here, a
    retry would run what nothing checked, a finished job would claim inputs its outputs did not
    come from, and a changed publish token would leave its queued message unrun."""

    actions = ["retry_jobs", "cancel_jobs"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        # Its page is a view with no save: a save would write back the whole row as it was
        # read, undoing a heartbeat, a cancel or the result a worker wrote meanwhile.
        return False

    def get_readonly_fields(self, request, obj=None) -> tuple[str, ...]:
        fields = [*self.model._meta.fields, *self.model._meta.many_to_many]
        return tuple(field.name for field in fields if not field.primary_key)

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
