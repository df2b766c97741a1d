"""Processes a fault test owns: its own redis-server on a free port (killed and restarted by the
test, never a shared one) and Celery workers in their own process groups (killed whole)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

from tests.conftest import WAIT_SECONDS, broker_at, free_port

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = WAIT_SECONDS


class RedisServer:
    """A throw-away redis-server that keeps nothing on disk (a restart comes back empty)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE
        while not self.is_up():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def is_up(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None

    def queue_length(self, queue: str) -> int:
        import redis

        return int(redis.Redis.from_url(self.url).llen(queue))


def database_url() -> str:
    """The test database as a URL, for worker processes."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """A real Celery worker (optionally with beat) in its own process group."""

    def __init__(
        self,
        *,
        broker_url: str,
        queues: str,
        log_dir: Path,
        model_dir: Path,
        beat: bool = False,
        environment: dict[str, str] | None = None,
        name: str = "fault",
    ) -> None:
        self.log_path = log_dir / f"worker-{name}-{free_port()}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--concurrency",
            "1",
            "-n",
            f"{name}-{self.log_path.stem}@%h",
            "--without-gossip",
            "--without-mingle",
            "-l",
            "INFO",
        ]
        if beat:
            command += ["-B", "--schedule", str(log_dir / f"beat-{self.log_path.stem}")]
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "SAMPLER_MODEL": str(model_dir),
            "MODEL_ROOT": str(log_dir / "models"),
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            **(environment or {}),
        }
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill_tree() takes it all
        )

    def wait_ready(self) -> Worker:
        deadline = time.monotonic() + START_DEADLINE
        while " ready." not in self.log_path.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("The worker did not start:\n" + self.output()[-3000:])
            time.sleep(0.1)
        return self

    def output(self) -> str:
        return self.log_path.read_text()

    def kill_tree(self) -> None:
        """SIGKILL the worker and every process it started (pool, beat)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_tree()
        self.log.close()


@contextmanager
def publishing_to(broker_url: str):
    """Point this process's Celery app (what services publish with) at ``broker_url``, with
    the short socket timeouts a web process has, so a dead broker fails a publication fast."""
    from config.celery import app

    options = dict(app.conf.broker_transport_options or {})
    app.conf.broker_transport_options = {"socket_connect_timeout": 2, "socket_timeout": 5}
    try:
        with broker_at(broker_url):
            yield app
    finally:
        app.conf.broker_transport_options = options
