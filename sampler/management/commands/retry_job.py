from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from config.querysets import MAX_ID
from sampler.jobs.kinds import (
    job_kind_missing_message,
    job_kind_named,
    job_kind_of,
    job_kinds,
    job_missing_message,
)
from sampler.jobs.models import JobStatus
from sampler.jobs.services import job_retry


class Command(BaseCommand):
    help = (
        "Queue failed or cancelled jobs again (a training run resumes from its last checkpoint). "
        "Kinds: the executor's job kinds (generation, training, comparison, attack_run, ...)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "kind", nargs="?", help="The kind of job (none, with --all-failed: every kind)."
        )
        parser.add_argument("ids", nargs="*", type=int, help="Job ids.")
        parser.add_argument(
            "--all-failed", action="store_true", help="Every failed job of this kind (or all)."
        )

    def handle(self, *args, kind: str | None, ids: list[int], all_failed: bool, **options):
        if kind is None:
            if not all_failed:
                raise CommandError("Name a kind and job ids, or --all-failed.")
            kinds = job_kinds()
        else:
            try:
                kinds = [job_kind_named(kind)]
            except LookupError as error:
                raise CommandError(job_kind_missing_message(kind)) from error
            if not ids and not all_failed:
                raise CommandError("Name job ids, or --all-failed.")
        jobs = []
        for each in kinds:
            # Kinds that share a table (generation, ranking_preparation) take their own rows.
            rows = each.model.objects.filter(status=JobStatus.FAILED) if all_failed else []
            rows = [*rows, *each.model.objects.filter(pk__in=[i for i in ids if 1 <= i <= MAX_ID])]
            jobs += [(each.name, job) for job in rows if job_kind_of(job).name == each.name]
        missing = sorted(set(ids) - {job.pk for _, job in jobs})
        if missing:
            # Each on a line as a job's own is told below, in the jobs API's words.
            raise CommandError(
                "\n".join(f"{kind} {job_id}: {job_missing_message(kind)}" for job_id in missing)
            )
        if not jobs:
            self.stdout.write("No failed job.")
        problems = 0
        for kind, job in {(name, job.pk): (name, job) for name, job in jobs}.values():
            try:
                publication = job_retry(job=job)
            except ValidationError as error:
                problems += 1
                self.stderr.write(f"{kind} {job.pk}: {' '.join(error.messages)}")
                continue
            note = (
                " (the job queue is unreachable: it runs once it is back)"
                if publication.failed
                else ""
            )
            self.stdout.write(f"{kind} {job.pk}: queued again on {publication.queue}{note}")
        if problems:
            raise CommandError(f"{problems} job(s) could not be retried.")
