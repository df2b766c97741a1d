"""Suggestion latency through the real queues: idle vs while bulk work is queued, one run.

Usage: .venv/bin/python bench/bench_queues.py [--suggestions 20] [--bulk-jobs 50]

Starts its own redis-server on a free port, a fresh PostgreSQL database
(postgres://postgres@127.0.0.1:5432/tandem_bench_queues_<pid>, dropped at the end; another
server with BENCH_DATABASE_SERVER=postgres://user@host:port) and three Celery workers, one per
queue group the load touches, each with one process and one torch thread: `interactive`
(suggestions), and `generation` and `training` started at CPU priority `nice 10`, as the README
recommends for bulk workers. The model is the embedded one.

Two phases measure the same work: the same suggestion requests (prompts, seeds, K=3,
48 new tokens), one at a time, from creation to the job's last sample in the database.
- idle: nothing else queued;
- loaded: a reward-model training run (pairs from a file, long enough to outlast the phase) is
  running on the training worker and `--bulk-jobs` generation jobs of K=4 x 96 tokens (the shape
  of ranking candidates) are queued on the generation queue.
Prints p50/p95 per phase and the loaded/idle ratios. Target: loaded p95 <= 2x idle p95.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SERVER = os.environ.get("BENCH_DATABASE_SERVER", "postgres://postgres@127.0.0.1:5432")
DATABASE_URL = f"{SERVER}/tandem_bench_queues_{os.getpid()}"
PROMPTS = [
    "any plans for the weekend?",
    "what is a good name for a cat?",
    "can you recommend a book?",
    "how was your day?",
    "what should i cook tonight?",
]
DEADLINE_SECONDS = 900


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    return process, f"redis://127.0.0.1:{port}/0"


def _start_worker(
    group: str, queues: str, *, env: dict, folder: Path, nice: int
) -> tuple[subprocess.Popen, Path]:
    log = folder / f"worker-{group}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-n",
         f"{group}@%h", "--concurrency", "1", "--without-mingle", "--without-gossip", "-l", "INFO"],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=(lambda: os.nice(nice)) if nice else None,
    )  # fmt: skip
    return process, log


def _wait_ready(workers: list[tuple[subprocess.Popen, Path]]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    for process, log in workers:
        while " ready." not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)


def _pairs_file(path: Path, rng: random.Random, count: int = 4000) -> None:
    words = ["the", "a", "weekend", "hiking", "book", "coffee", "music", "friend", "city", "rain"]
    with path.open("w") as out:
        for _ in range(count):
            prompt = [{"role": "user", "content": " ".join(rng.choices(words, k=8)) + "?"}]
            chosen = " ".join(rng.choices(words, k=20))
            rejected = " ".join(rng.choices(words, k=6))
            out.write(
                json.dumps(
                    {
                        "prompt": prompt,
                        "chosen": [{"role": "assistant", "content": chosen}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                        "split": "train",
                    }
                )
                + "\n"
            )


def _suggestion_latencies(count: int) -> list[float]:
    from sampler.generation.models import GenerationJob
    from sampler.generation.services import generation_job_create

    latencies = []
    for index in range(count):
        prompt = PROMPTS[index % len(PROMPTS)]
        started = time.perf_counter()
        job = generation_job_create(
            n=3,
            messages=[{"role": "user", "content": prompt}],
            params={"max_new_tokens": 48},
            seed=1000 + index,
            purpose=GenerationJob.Purpose.SUGGESTION,
        )
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            job.refresh_from_db(fields=["status", "error"])
            if job.status == GenerationJob.Status.SUCCEEDED:
                break
            if job.status in {GenerationJob.Status.FAILED, GenerationJob.Status.CANCELLED}:
                raise RuntimeError(f"suggestion job {job.pk} {job.status}: {job.error}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"suggestion job {job.pk} did not finish")
            time.sleep(0.02)
        latencies.append(time.perf_counter() - started)
    return latencies


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _summary(name: str, values: list[float]) -> dict:
    result = {
        "p50": statistics.median(values),
        "p95": _percentile(values, 0.95),
        "max": max(values),
    }
    print(
        f"{name:>7}: p50 {result['p50'] * 1000:.0f} ms, p95 {result['p95'] * 1000:.0f} ms, "
        f"max {result['max'] * 1000:.0f} ms ({len(values)} suggestions)",
        flush=True,
    )
    return result


def _wait(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suggestions", type=int, default=20)
    parser.add_argument("--bulk-jobs", type=int, default=50)
    arguments = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="tandem-bench-queues-"))
    redis_process, broker = _start_redis(folder)
    threads = os.environ.get("TORCH_THREADS", "1")
    env = {
        **os.environ,
        "DATABASE_URL": DATABASE_URL,
        "CELERY_BROKER_URL": broker,
        "MODEL_ROOT": str(folder / "models"),
        "TORCH_THREADS": threads,
        "DEBUG": "0",
    }
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "CELERY_BROKER_URL", "MODEL_ROOT")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from _db import database_drop, database_ensure

    database_ensure(DATABASE_URL)
    workers = []
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("ensure_default_model", stdout=open(os.devnull, "w"))  # noqa: SIM115
        for group, queues, nice in (
            ("interactive", "interactive", 0),
            ("generation", "generation", 10),
            ("training", "training", 10),
        ):
            workers.append(_start_worker(group, queues, env=env, folder=folder, nice=nice))
        _wait_ready(workers)
        print(f"workers ready ({threads} torch thread each); warming the interactive worker")
        _suggestion_latencies(3)
        idle = _summary("idle", _suggestion_latencies(arguments.suggestions))
        loaded = _summary("loaded", _loaded(arguments, folder))
        print(
            f"loaded/idle: p50 {loaded['p50'] / idle['p50']:.2f}x, "
            f"p95 {loaded['p95'] / idle['p95']:.2f}x (target p95 <= 2x)"
        )
    finally:
        for process, _ in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait()
        redis_process.kill()
        redis_process.wait()
        from django.db import connections

        connections.close_all()
        database_drop(DATABASE_URL)
        shutil.rmtree(folder, ignore_errors=True)


def _loaded(arguments, folder: Path) -> list[float]:
    from sampler.generation.models import GenerationJob
    from sampler.generation.services import generation_job_create
    from sampler.runs.models import TrainingRun
    from sampler.runs.services import training_run_create

    pairs = folder / "pairs.jsonl"
    _pairs_file(pairs, random.Random(0))
    run = training_run_create(
        kind="reward",
        data_path=str(pairs),
        config={"epochs": 50, "batch_size": 8, "normalize_to_demonstrations": False},
        allowed_data_roots=[folder],
    )
    bulk = [
        generation_job_create(
            n=4,
            messages=[{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}],
            params={"max_new_tokens": 96},
            seed=i,
            purpose=GenerationJob.Purpose.MANUAL,
        )
        for i in range(arguments.bulk_jobs)
    ]
    _wait(
        lambda: TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).exists(),
        "the training run to start",
    )
    _wait(
        lambda: GenerationJob.objects.filter(
            pk__in=[j.pk for j in bulk], status=GenerationJob.Status.RUNNING
        ).exists(),
        "the bulk generation to start",
    )
    latencies = _suggestion_latencies(arguments.suggestions)
    still = GenerationJob.objects.filter(
        pk__in=[j.pk for j in bulk], status=GenerationJob.Status.QUEUED
    ).count()
    run.refresh_from_db()
    print(
        f"during the loaded phase: training run {run.status}, "
        f"{still} of {arguments.bulk_jobs} bulk jobs still queued at its end"
    )
    if run.status != TrainingRun.Status.RUNNING or still == 0:
        print("warning: the load ended before the phase did; raise the epochs or --bulk-jobs")
    return latencies


if __name__ == "__main__":
    main()
