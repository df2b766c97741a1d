from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sampler.jobs.kinds import job_kind_named, job_kinds
from sampler.jobs.models import JobStatus
from sampler.jobs.services import job_retry


class Command(BaseCommand):
    help = (
        "Queue failed or cancelled jobs again (a training run resumes from its last checkpoint). "
        "Kinds: the executor's job kinds (generation, training, comparison, attack_run, ...)."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", help="The kind of job.")
        parser.add_argument("ids", nargs="*", type=int, help="Job ids.")
        parser.add_argument(
            "--all-failed", action="store_true", help="Every failed job of this kind."
        )

    def handle(self, *args, kind: str, ids: list[int], all_failed: bool, **options):
        try:
            model = job_kind_named(kind).model
        except LookupError as error:
            names = ", ".join(sorted(k.name for k in job_kinds()))
            raise CommandError(f"{error} Kinds: {names}.") from error
        if not ids and not all_failed:
            raise CommandError("Name job ids, or --all-failed.")
        jobs = model.objects.filter(status=JobStatus.FAILED) if all_failed else model.objects.none()
        jobs = list(jobs) + [job for job in model.objects.filter(pk__in=ids)]
        missing = sorted(set(ids) - {job.pk for job in jobs})
        if missing:
            raise CommandError(f"No {kind} job with id {', '.join(map(str, missing))}.")
        problems = 0
        for job in {job.pk: job for job in jobs}.values():
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
