import json

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from sampler.generation import services
from sampler.generation.models import GenerationJob
from sampler.jobs.services import job_run_inline


class Command(BaseCommand):
    help = (
        "Sample completions of a one-turn prompt from the active policy and print them. "
        "Runs in this process by default; --queue sends it through the workers instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("prompt", help="The user turn to answer.")
        parser.add_argument(
            "-n", type=int, default=3, help=f"How many completions (1-{settings.GENERATION_MAX_N})."
        )
        parser.add_argument("--temperature", type=float, default=0.8)
        parser.add_argument("--top-p", type=float, default=0.9)
        parser.add_argument("--max-new-tokens", type=int, default=64)
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="Print the job as JSON.")
        parser.add_argument(
            "--queue", action="store_true", help="Queue it for a generation worker and wait."
        )
        parser.add_argument(
            "--timeout", type=float, default=None, help="Seconds to wait with --queue (120)."
        )

    def handle(self, *args, **options):
        if options["timeout"] is not None and not options["queue"]:
            raise CommandError("--timeout is how long --queue waits for a worker; add --queue.")
        if options["timeout"] is not None and not 0 < options["timeout"] < 86400:
            raise CommandError("--timeout is a number of seconds above 0 and below a day.")
        try:
            job = services.prompt_job_create(
                prompt=options["prompt"], choices=options, queue=options["queue"]
            )
        except ValidationError as error:
            problems = (f"{key}: {' '.join(value)}" for key, value in error.message_dict.items())
            raise CommandError("; ".join(problems)) from error
        if options["queue"]:
            job = self._wait(job.pk, options["timeout"] or 120.0)
        else:
            job = job_run_inline(job=job)
        if job.status != GenerationJob.Status.SUCCEEDED:
            raise CommandError(f"Job {job.pk} {job.status}: {job.error}")
        samples = list(job.samples.order_by("index"))
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "job": job.pk,
                        "model_version": job.model_version.name,
                        "seed": job.seed,
                        "params": job.params,
                        "samples": [
                            {
                                "text": s.text,
                                "token_count": s.token_count,
                                "finish_reason": s.finish_reason,
                            }
                            for s in samples
                        ],
                    },
                    indent=2,
                )
            )
            return
        self.stdout.write(
            f"job {job.pk} · {job.model_version.name} · seed {job.seed} · {job.duration_ms} ms"
        )
        if job.notes:
            self.stdout.write(job.notes)
        for sample in samples:
            detail = f"{sample.token_count} tokens, {sample.finish_reason}"
            self.stdout.write(f"[{sample.index}] {sample.text}  ({detail})")

    def _wait(self, job_id: int, timeout: float) -> GenerationJob:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = GenerationJob.objects.get(pk=job_id)
            if job.is_finished:
                return job
            time.sleep(0.25)
        raise CommandError(
            f"No worker finished job {job_id} within {timeout:.0f} s; is one running?"
        )
