"""(c) Suggestion latency through the real queues: idle vs loaded, side by side in one run.

Usage: .venv/bin/python bench/bench_queues.py [--suggestions 20]
       [--database postgres://postgres@127.0.0.1:5432/tandem_bench_queues]

       [--bulk-waiting 16]

Starts its own redis-server and three Celery workers as `make run` groups them (interactive;
generation and training at a lower CPU priority, nice 10), one torch thread each, on the
embedded model. Then asks for suggestions (n=3, 32 new tokens) one after another and records
each one's latency from the request to its samples being stored: first with nothing else
queued, then while a reward-model run trains and the bulk queue is kept full of ranking-style
generation jobs (n=4, 48 new tokens). The bulk worker takes up to GENERATION_BATCH_JOBS of them
per batch, so a fixed set would drain: before each loaded suggestion is sent, the bench tops
the bulk queue up to ``--bulk-waiting`` queued jobs (default two batches, 2 x
GENERATION_BATCH_JOBS), and it counts them again just after the suggestion's job is created.
Both sides ask for the same suggestions (same seeds) after the same two warm-up ones; the loaded
side starts once a bulk batch is generating and the run has made progress. Prints p50/p95 of
both and the ratio, then what the load was at each loaded send: queued bulk jobs (min and
median), at how many sends a bulk batch was generating and the run was training, and how many
bulk jobs finished during the loaded suggestions.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPT = [{"role": "user", "content": "hi! what did you do this weekend?"}]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _database_empty(url: str) -> None:
    """Start from an empty schema: rows left by an earlier run would join the load."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    with psycopg.connect(
        dbname=config["NAME"], user=config["USER"] or None, host=config["HOST"] or None,
        port=config["PORT"] or None, autocommit=True,
    ) as connection:  # fmt: skip
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")


def _stop(worker: subprocess.Popen) -> None:
    """A worker and its pool process, at once: a warm shutdown would finish the run it holds."""
    children = subprocess.run(
        ["pgrep", "-P", str(worker.pid)], capture_output=True, text=True
    ).stdout.split()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    worker.kill()
    worker.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suggestions", type=int, default=20)
    parser.add_argument(
        "--bulk-waiting",
        type=int,
        default=None,
        help="bulk generation jobs kept queued at each loaded send (default 2 x "
        "GENERATION_BATCH_JOBS)",
    )
    parser.add_argument(
        "--database", default="postgres://postgres@127.0.0.1:5432/tandem_bench_queues"
    )
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-queues-"))
    port = free_port()
    redis = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    environment = {
        **os.environ,
        "DATABASE_URL": arguments.database,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0",
        "TORCH_THREADS": "1",
        "MODEL_ROOT": str(work / "models"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    os.environ.update(environment)
    from bench._db import database_ensure

    database_ensure(arguments.database)
    _database_empty(arguments.database)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.conf import settings
    from django.utils import timezone

    from config.celery import app
    from sampler.generation.models import GenerationJob
    from sampler.generation.services import generation_job_create
    from sampler.jobs.models import FINISHED, JobStatus
    from sampler.registry.services import model_version_ensure_default
    from sampler.runs.models import TrainingRun
    from sampler.runs.services import training_run_create
    from sampler.training.synthetic import synthetic_rankings

    policy = model_version_ensure_default()
    workers = []
    for group, nice in (("interactive", 0), ("generation", 10), ("training", 10)):
        log = open(work / f"worker-{group}.log", "w")  # noqa: SIM115 - closed at exit
        command = [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", group,
                   "-n", f"{group}-{port}@%h", "--concurrency", "1", "--without-gossip",
                   "--without-mingle", "-l", "WARNING"]  # fmt: skip
        if nice:
            command = ["nice", "-n", str(nice), *command]
        workers.append(subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log, stderr=log))
    try:
        deadline = time.monotonic() + 600
        while len(app.control.ping(timeout=1)) < 3:
            if time.monotonic() > deadline:
                raise SystemExit(f"workers did not start; logs in {work}")
        print(f"3 workers up; model {policy.path}; backend {policy.backend}")

        floor = arguments.bulk_waiting
        if floor is None:
            floor = 2 * settings.GENERATION_BATCH_JOBS
        bulk = GenerationJob.objects.filter(purpose=GenerationJob.Purpose.MANUAL)
        bulk_made = itertools.count()

        def bulk_top_up(wanted: int) -> None:
            """Queue bulk jobs until ``wanted`` wait (none when ``wanted`` is 0: the idle side
            runs the same count query)."""
            for _ in range(wanted - bulk.filter(status=JobStatus.QUEUED).count()):
                index = next(bulk_made)
                generation_job_create(
                    messages=[{"role": "user", "content": f"tell me about day {index}"}], n=4,
                    params={"max_new_tokens": 48}, seed=index,
                    purpose=GenerationJob.Purpose.MANUAL,
                )  # fmt: skip

        def suggestions(count: int, seed: int, wanted: int) -> tuple[list[float], list[dict]]:
            """Latencies, and what was waiting or running when each suggestion was sent."""
            latencies, loads = [], []
            for index in range(count):
                bulk_top_up(wanted)
                started = time.monotonic()
                job = generation_job_create(
                    messages=PROMPT, n=3, params={"max_new_tokens": 32}, seed=seed + index,
                    purpose=GenerationJob.Purpose.SUGGESTION,
                )  # fmt: skip
                loads.append(
                    {
                        "waiting": bulk.filter(status=JobStatus.QUEUED).count(),
                        "generating": bulk.filter(status=JobStatus.RUNNING).exists(),
                        "training": TrainingRun.objects.filter(status="running").exists(),
                    }
                )
                while not GenerationJob.objects.get(pk=job.pk).is_finished:
                    time.sleep(0.05)
                latencies.append(time.monotonic() - started)
            return latencies, loads

        suggestions(2, 10_000, 0)  # warm-up: the interactive worker loads the model
        idle, _ = suggestions(arguments.suggestions, 0, 0)

        data = work / "rankings.jsonl"
        data.write_text("\n".join(json.dumps(r) for r in synthetic_rankings(400, seed=0)))
        run = training_run_create(
            kind="reward",
            data_path=str(data),
            base_version=policy,
            config={"epochs": 3.0, "normalize_to_demonstrations": False},
        )
        # Measure once the load is really on: a bulk batch generating and the run training.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            bulk_top_up(floor)
            run.refresh_from_db()
            generating = bulk.filter(status=JobStatus.RUNNING).exists()
            if generating and run.status == "running" and (run.progress or 0) > 0:
                break
            time.sleep(0.5)
        suggestions(2, 10_000, floor)  # the same warm-up as the idle side, under the load
        run.refresh_from_db()
        progress_before = run.progress or 0
        measured_from = timezone.now()
        loaded, loads = suggestions(arguments.suggestions, 0, floor)
        finished = bulk.filter(finished_at__gte=measured_from, status__in=FINISHED).count()
        failed = bulk.filter(finished_at__gte=measured_from, status=JobStatus.FAILED).count()
        seconds = (timezone.now() - measured_from).total_seconds()
        run.refresh_from_db()
        waiting = [load["waiting"] for load in loads]
        print(f"suggestions: {arguments.suggestions} each, n=3, 32 new tokens, 2 warm-up per side")
        print(f"idle    p50 {percentile(idle, 0.5):6.2f} s  p95 {percentile(idle, 0.95):6.2f} s")
        print(
            f"loaded  p50 {percentile(loaded, 0.5):6.2f} s  p95 {percentile(loaded, 0.95):6.2f} s"
        )
        print(
            f"ratio   p50 {percentile(loaded, 0.5) / percentile(idle, 0.5):5.2f}x "
            f" p95 {percentile(loaded, 0.95) / percentile(idle, 0.95):5.2f}x"
        )
        print(
            f"load at each loaded send (topped up to {floor} queued bulk jobs before it): "
            f"queued bulk jobs min {min(waiting)}, median {statistics.median(waiting):g}, "
            f"max {max(waiting)}; a bulk batch generating at "
            f"{sum(load['generating'] for load in loads)} of {len(loads)} sends, the reward run "
            f"training at {sum(load['training'] for load in loads)}"
        )
        print(
            f"during the loaded suggestions ({seconds:.1f} s): {finished} bulk jobs finished "
            f"({failed} failed), {next(bulk_made)} queued in all; reward run {run.status}, "
            f"progress {progress_before:.2f} -> {run.progress or 0:.2f}"
        )
        print(
            f"mean idle {statistics.mean(idle):.2f} s, mean loaded {statistics.mean(loaded):.2f} s"
        )
    finally:
        for worker in workers:
            _stop(worker)
        redis.terminate()


if __name__ == "__main__":
    main()
