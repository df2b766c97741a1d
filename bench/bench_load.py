"""50 scripted trainers against gunicorn on PostgreSQL, side by side with one trainer alone.

Usage: .venv/bin/python bench/bench_load.py [--trainers 50] [--cycles 12] [--think 0.5]
       [--web-workers 4] [--web-threads 4] [--basic]
       DATABASE_URL=postgres://... (default postgres://postgres@127.0.0.1:5432/tandem_bench_load;
       created if missing, migrated, and emptied)

Seeds bench_assignment's rows (1k messages of history) with enough open ranking tasks that
claims never run dry, gives each trainer an API token, and starts gunicorn (production mode,
this run's own redis-server as broker and cache, the psycopg pool) on a free port. Each trainer
repeats ``--cycles`` times: think, claim (POST /api/ranking/claim/), think, read (GET
/api/conversations/), think, submit (POST .../submit/), with ``Authorization: Bearer``. First
one trainer alone, then all of them at once, on the same server (``--basic``: then both again
with HTTP Basic auth, a password hash per request, for comparison). Prints p50/p95 per operation
for both, errors (any status other than the expected one, or a refused connection), the peak of
PostgreSQL connections to the database, and the p95 ratios (target: <= 5x, 0 errors, peak
connections < max_connections).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _db import (  # noqa: E402
    database_connect,
    django_environment,
    django_ready_on_postgresql,
)

# Before bench_assignment sets its own defaults.
django_environment("postgres://postgres@127.0.0.1:5432/tandem_bench_load")

import bench_assignment  # noqa: E402 - the same seeding (needs the bench folder on sys.path)

OPERATIONS = ("claim", "read", "submit")
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, *, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {port} within {STARTUP_SECONDS} s")


def seed(*, open_tasks: int, trainers: int, basic: bool) -> dict[str, list[str]]:
    """bench_assignment's rows with ``open_tasks`` READY tasks; each trainer's Authorization
    header: an API token, and with ``basic`` a password (HTTP Basic) too."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from accounts.services import api_token_create

    bench_assignment.FRONTIER_TASKS = open_tasks
    bench_assignment.HISTORY_TRAINERS = max(bench_assignment.HISTORY_TRAINERS, trainers)
    bench_assignment.tables_empty()
    bench_assignment.seed(1_000, rng=random.Random(0))
    user_model = get_user_model()
    users = list(user_model.objects.filter(username__startswith="ranker").order_by("pk"))
    users = users[:trainers]
    headers = {"token": [f"Bearer {api_token_create(user=u, name='bench').secret}" for u in users]}
    if basic:
        password = secrets.token_urlsafe(16)
        # One hash for all (hashing is what each Basic request pays, not what seeding should).
        user_model.objects.filter(pk__in=[u.pk for u in users]).update(
            password=make_password(password)
        )
        headers["basic"] = [
            "Basic " + base64.b64encode(f"{u.username}:{password}".encode()).decode() for u in users
        ]
    return headers


class Trainer:
    def __init__(self, port: int, authorization: str, *, think: float, rng: random.Random):
        self.port, self.think, self.rng = port, think, rng
        self.headers = {"Authorization": authorization, "Content-Type": "application/json"}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    def request(self, operation: str, method: str, path: str, body: object, expected: int):
        # Think time, jittered so 50 trainers do not march in step.
        time.sleep(self.think * self.rng.uniform(0.8, 1.2))
        payload = None if body is None else json.dumps(body)
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=payload, headers=self.headers)
            response = self.connection.getresponse()
            content = response.read()
        except (OSError, http.client.HTTPException) as error:
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            self.errors.append(f"{operation}: {type(error).__name__}: {error}")
            return None
        self.timings[operation].append((time.perf_counter() - started) * 1000)
        if response.status != expected:
            self.errors.append(f"{operation}: {response.status} {content[:200]!r}")
            return None
        return json.loads(content) if content else None

    def run(self, cycles: int) -> None:
        for _ in range(cycles):
            claim = self.request("claim", "POST", "/api/ranking/claim/", {}, 200)
            self.request("read", "GET", "/api/conversations/?limit=20", None, 200)
            if claim is None:
                continue
            ids = [candidate["id"] for candidate in claim["candidates"]]
            self.rng.shuffle(ids)
            self.request(
                "submit",
                "POST",
                f"/api/ranking/assignments/{claim['assignment_id']}/submit/",
                {"ordering": [[i] for i in ids], "rationale": "bench"},
                201,
            )
        self.connection.close()


def run_phase(port: int, authorizations: list[str], *, cycles: int, think: float) -> dict:
    trainers = [
        Trainer(port, authorization, think=think, rng=random.Random(index))
        for index, authorization in enumerate(authorizations)
    ]
    threads = [threading.Thread(target=t.run, args=(cycles,)) for t in trainers]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings = defaultdict(list)
    for trainer in trainers:
        for operation, values in trainer.timings.items():
            timings[operation].extend(values)
    return {
        "seconds": time.perf_counter() - started,
        "timings": timings,
        "errors": [error for trainer in trainers for error in trainer.errors],
    }


class ConnectionWatch(threading.Thread):
    """The peak number of PostgreSQL connections to the bench database, sampled every 0.1 s."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        import dj_database_url

        self.database_url = database_url
        self.name = dj_database_url.parse(database_url)["NAME"]
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with database_connect(self.database_url, autocommit=True) as connection:
            while not self.stop.is_set():
                (count,) = connection.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    [self.name],
                ).fetchone()
                self.peak = max(self.peak, count)
                time.sleep(0.1)

    def max_connections(self) -> int:
        with database_connect(self.database_url) as connection:
            return int(connection.execute("SHOW max_connections").fetchone()[0])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", type=int, default=50)
    parser.add_argument("--cycles", type=int, default=12, help="claim-read-submit per trainer")
    parser.add_argument("--think", type=float, default=0.5, help="seconds before each request")
    parser.add_argument("--web-workers", type=int, default=4)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument(
        "--basic",
        action="store_true",
        help="also run both phases with HTTP Basic auth (API_BASIC_AUTH=true), for comparison",
    )
    arguments = parser.parse_args()

    database_url = os.environ["DATABASE_URL"]
    django_ready_on_postgresql()
    from django.db import connection

    # Every ranking takes one of OVERLAP slots of a task: enough open tasks for every claim of
    # both phases, twice over.
    modes = ["token", "basic"] if arguments.basic else ["token"]
    rankings = len(modes) * (arguments.trainers + 1) * arguments.cycles
    open_tasks = 2 * rankings // bench_assignment.OVERLAP + 50
    authorizations = seed(
        open_tasks=open_tasks, trainers=arguments.trainers + 1, basic=arguments.basic
    )
    connection.close()

    scratch = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis_port, web_port = free_port(), free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(scratch)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    environment = os.environ | {
        "TANDEM_MODE": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "EXPORT_PSEUDONYM_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
        "CACHE_URL": f"redis://127.0.0.1:{redis_port}/1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "HTTPS": "false",
        "DEBUG": "false",
        "VAR_DIR": str(scratch),
        "WEB_PORT": str(web_port),
        "WEB_CONCURRENCY": str(arguments.web_workers),
        "WEB_THREADS": str(arguments.web_threads),
        "DATABASE_POOL_MAX_SIZE": str(arguments.web_threads),
        "LOG_LEVEL": "WARNING",
        # Only used by the --basic phases; token requests never reach the Basic class.
        "API_BASIC_AUTH": "true" if arguments.basic else "false",
    }
    gunicorn = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--config",
         "python:config.gunicorn", "--access-logfile", "/dev/null"],
        cwd=ROOT,
        env=environment,
    )  # fmt: skip
    watch = ConnectionWatch(database_url)
    try:
        wait_for_port(redis_port, process=redis, what="redis-server")
        wait_for_port(web_port, process=gunicorn, what="gunicorn")
        # Warm every gunicorn process (imports, pools) with a few untimed requests.
        run_phase(web_port, authorizations["token"][:1], cycles=arguments.web_workers, think=0)
        watch.start()
        print(
            f"gunicorn: {arguments.web_workers} processes x {arguments.web_threads} threads, pool "
            f"max {arguments.web_threads} each; {arguments.trainers} trainers, {arguments.cycles} "
            f"cycles each, think {arguments.think} s; {os.cpu_count()} CPUs, load average "
            f"{os.getloadavg()[0]:.1f} before"
        )
        phases = {}
        pace = {"cycles": arguments.cycles, "think": arguments.think}
        for mode in modes:
            single = run_phase(web_port, authorizations[mode][:1], **pace)
            crowd = run_phase(web_port, authorizations[mode][1:], **pace)
            phases[mode] = (single, crowd)
        print(f"load average {os.getloadavg()[0]:.1f} after")
    finally:
        watch.stop.set()
        gunicorn.send_signal(signal.SIGTERM)
        gunicorn.wait(timeout=60)
        redis.terminate()
        redis.wait(timeout=30)
        shutil.rmtree(scratch, ignore_errors=True)
    max_connections = watch.max_connections()

    verdicts = []
    for mode, (single, crowd) in phases.items():
        print(f"\n{mode} auth:")
        worst, errors = report(single, crowd, label=f"{arguments.trainers} trainers")
        verdicts.append((mode, worst, errors))
    print(
        f"\nPostgreSQL connections to the database: peak {watch.peak} "
        f"(max_connections {max_connections})"
    )
    for mode, worst, errors in verdicts:
        met = worst <= 5 and not errors and watch.peak < max_connections
        verdict = "met" if met else "MISSED"
        print(
            f"{mode}: worst p95 ratio {worst:.2f}x, {errors} errors: target (<= 5x, 0 errors, "
            f"no exhaustion) {verdict}"
        )


def report(single: dict, crowd: dict, *, label: str) -> tuple[float, int]:
    header = f"{'1 trainer p50/p95 ms':>22} {label + ' p50/p95 ms':>26} {'p95 ratio':>10}"
    print(f"{'operation':10} {header}")
    ratios = []
    for operation in OPERATIONS:
        one, many = single["timings"][operation], crowd["timings"][operation]
        if not one or not many:
            print(f"{operation:10} no successful requests")
            continue
        ratio = percentile(many, 0.95) / percentile(one, 0.95)
        ratios.append(ratio)
        print(
            f"{operation:10} {statistics.median(one):10.1f} / {percentile(one, 0.95):7.1f}"
            f"   {statistics.median(many):12.1f} / {percentile(many, 0.95):7.1f}"
            f"   {ratio:9.2f}x"
        )
    requests = sum(len(v) for v in crowd["timings"].values())
    print(
        f"requests: 1 trainer {sum(len(v) for v in single['timings'].values())}, "
        f"{label} {requests} in {crowd['seconds']:.1f} s ({requests / crowd['seconds']:.1f}/s)"
    )
    print(f"errors: 1 trainer {len(single['errors'])}, {label} {len(crowd['errors'])}")
    for error in (single["errors"] + crowd["errors"])[:10]:
        print(f"  {error}")
    worst = max(ratios) if ratios else float("inf")
    return worst, len(single["errors"]) + len(crowd["errors"])


if __name__ == "__main__":
    main()
