"""`make run`'s script on a fresh var/: SQLite, the filesystem broker, one real worker process per
queue group and the committed embedded model, with nothing else running. It prints the URL, the
port and the credentials in a box once ready; the printed trainer logs in, and a generation job
comes back from a worker with the embedded model's text."""

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from config.celery import WORKER_GROUPS, Queue
from sampler.runs.models import TrainingRun
from sampler.training.synthetic import synthetic_rankings
from tests.conftest import WAIT_SECONDS, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "run_embedded.sh"
# The settings a test run or a production environment may have set; the embedded default has none.
SERVICE_VARIABLES = ("DATABASE_URL", "CELERY_BROKER_URL", "TANDEM_MODE", "SECRET_KEY", "MODEL_ROOT")


def _request(url: str, *, token: str | None = None, body: dict | None = None):
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
        return response.status, response.read().decode()


def _wait(predicate, *, what: str, log: Path):
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(
        f"{what} not within TEST_WAIT_SECONDS={WAIT_SECONDS:g} s; output:\n"
        f"{log.read_text()[-4000:]}"
    )


def _environment(tmp_path: Path) -> dict[str, str]:
    """The script's environment: none of the service settings, its own var/ and a free port."""
    env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
    return env | {
        "VAR_DIR": str(tmp_path / "var"),
        "PORT": str(free_port()),
        "OMP_NUM_THREADS": "1",
    }


def _start(env: dict[str, str], output: Path) -> subprocess.Popen:
    with output.open("a") as sink:
        return subprocess.Popen(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers and the server go too
        )


def _stop(process: subprocess.Popen) -> None:
    """Stop it as Ctrl+C does: SIGINT to the whole group. Celery's pool processes ignore
    SIGINT; the script stops each worker, which stops its own pool (a SIGTERM to the group can
    kill a pool process that holds its pool's queue lock, and its worker then waits for that
    lock at shutdown)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has gone already
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _manage(env: dict[str, str], *arguments: str) -> str:
    """What ``manage.py *arguments`` prints, run on the script's settings (``env``)."""
    finished = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def _ready_box(log: Path):
    printed = log.read_text()
    return printed if re.search(r"\| Tandem is ready .*\n(.*\n)*\+-+\+", printed) else None


@pytest.fixture
def embedded_app(tmp_path):
    """The script running on its own var/ dir; yields (base URL, its output file, its
    environment, its process group)."""
    env = _environment(tmp_path)
    output = tmp_path / "run.log"
    process = _start(env, output)
    try:
        yield f"http://127.0.0.1:{env['PORT']}", output, env, process.pid
    finally:
        _stop(process)


def _group_members(process_group: int) -> list[int]:
    """The live processes of ``process_group`` (not the zombies their parent has yet to reap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == process_group and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _worker_pids(process_group: int, worker_group: str) -> list[int]:
    """The Celery worker main processes of ``worker_group`` in the script's process group (not
    their pool processes, whose parent is the worker itself)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().split(b"\0")
            fields = stat[stat.rindex(")") + 2 :].split()
            parent = Path(f"/proc/{fields[1]}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue  # gone meanwhile
        mine = int(fields[2]) == process_group and f"{worker_group}@%h".encode() in command
        if mine and b"celery" not in parent:
            found.append(int(entry.name))
    return found


def test_make_run_serves_the_login_page_and_generations_from_the_embedded_model(embedded_app):
    base, log, env, script_group = embedded_app

    printed = _wait(lambda: _ready_box(log), what="the ready box", log=log)
    box = printed[printed.index("| Tandem is ready") :]
    assert f"Open  {base}/" in box and f"Port  {base.rsplit(':', 1)[1]} " in box
    found = re.search(r"trainer\s+username=(\S+)\s+password=(\S+)", box)
    assert found, box
    # Scripts use an API token (HTTP Basic is off): made for the printed trainer, as the README
    # shows.
    trainer = _manage(env, "api_token", "create", found.group(1), "test").strip()
    assert "Active policy: tandem-chitchat-tiny" in printed
    status, page = _request(f"{base}/accounts/login/")
    assert status == 200 and 'name="password"' in page
    # Ready: the database, the broker and a live worker on every queue, one worker per group.
    status, body = _request(f"{base}/readyz")
    assert status == 200
    consumers = Counter(queue.value for queues in WORKER_GROUPS.values() for queue in queues)
    assert json.loads(body)["checks"]["workers"]["live"] == {q.value: consumers[q] for q in Queue}
    for group in WORKER_GROUPS:
        assert (log.parent / "var" / "log" / f"worker-{group}.log").exists()

    status, body = _request(
        f"{base}/api/generation-jobs/",
        token=trainer,
        body={
            "messages": [{"role": "user", "content": "hi! how was your weekend?"}],
            "n": 3,
            "seed": 7,
            "params": {"max_new_tokens": 24},
        },
    )
    assert status == 201
    job_id = json.loads(body)["id"]

    def finished_job():
        job = json.loads(_request(f"{base}/api/generation-jobs/{job_id}/", token=trainer)[1])
        return job if job["status"] in {"succeeded", "failed"} else None

    job = _wait(finished_job, what="the job through the worker", log=log)
    assert job["status"] == "succeeded", job["error"]
    assert job["model_version"] == "tandem-chitchat-tiny"
    assert len(job["samples"]) == 3
    texts = [sample["text"] for sample in job["samples"]]
    # The embedded model writes English words, not byte soup.
    words = re.findall(r"[a-z']+", " ".join(texts).lower())
    assert len(words) >= 3 and {"i", "you", "the", "a", "it", "to", "is"} & set(words), texts
    # It ran on the embedded default: SQLite and the broker folders under the fresh var/.
    assert (log.parent / "var" / "tandem.sqlite3").exists()
    assert (log.parent / "var" / "celery-broker").is_dir()

    # A worker that dies is started again, and its log keeps what the first one wrote.
    worker_log = log.parent / "var" / "log" / "worker-generation.log"
    (first,) = _wait(lambda: _worker_pids(script_group, "generation"), what="the worker", log=log)
    os.kill(first, signal.SIGTERM)

    def restarted():
        pids = _worker_pids(script_group, "generation")
        text = worker_log.read_text()
        return pids if pids and first not in pids and text.count(" ready.") >= 2 else None

    _wait(restarted, what="the generation worker started again", log=worker_log)
    text = worker_log.read_text()
    assert "the worker exited with status 0; starting it again" in text
    assert "A worker exited (status 0) and is starting again" in log.read_text()


# Seconds a stop of the script may take with a training run on its worker: its script stops a
# worker within about 10 s (README: "Stop: Ctrl+C"); the run, left to finish, takes hours.
STOP_DEADLINE = 60


def _assert_all_gone(process: subprocess.Popen, *, after: str, log: Path) -> None:
    """Wait up to ``STOP_DEADLINE`` for the script and every process of its group to end."""
    deadline = time.monotonic() + STOP_DEADLINE
    while (process.poll() is None or _group_members(process.pid)) and (time.monotonic() < deadline):
        time.sleep(0.5)
    left = [
        (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(), pid)
        for pid in _group_members(process.pid)
    ]
    assert process.poll() is not None and not left, (
        f"still running {STOP_DEADLINE} s after {after}: {left}; output:\n{log.read_text()[-3000:]}"
    )


def _training_run(var: Path, run_id: int) -> dict:
    """The run's row as the script's SQLite database holds it."""
    with contextlib.closing(
        sqlite3.connect(f"file:{var / 'tandem.sqlite3'}?mode=ro", uri=True)
    ) as db:
        db.row_factory = sqlite3.Row
        row = db.execute(
            f"SELECT status, attempts, error, log FROM {TrainingRun._meta.db_table} WHERE id = ?",
            (run_id,),
        ).fetchone()
    return dict(row)


def test_make_run_stopped_while_a_run_trains_stops_soon_and_the_next_one_resumes_the_run(
    tmp_path,
):
    """A TERM to the script while a training run trains on its worker (which a warm shutdown
    alone waits for to the end): every process is gone well before the run could have ended,
    the run is back in its queue with its attempt not counted, and the next start resumes it
    from its checkpoint."""
    env = _environment(tmp_path)
    var = Path(env["VAR_DIR"])
    data = tmp_path / "rankings.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in synthetic_rankings(60, k=3, seed=4)))
    first_log = tmp_path / "first.log"
    process = _start(env, first_log)
    try:
        _wait(lambda: _ready_box(first_log), what="the ready box", log=first_log)
        queued = _manage(
            env,
            "train_reward",
            *("--data", str(data), "--queue", "--max-steps", "1000000"),
            *("--checkpoint-every", "2", "--batch-size", "2", "--max-length", "32"),
            *("--normalize-to-demonstrations", "no"),
        )
        run_id = int(re.search(r"training run (\d+)", queued).group(1))
        worker_log = var / "log" / "worker-training.log"
        _wait(
            lambda: "checkpoint step-" in _training_run(var, run_id)["log"],
            what="the run's first checkpoint",
            log=worker_log,
        )

        os.kill(process.pid, signal.SIGTERM)
        _assert_all_gone(process, after="the TERM", log=first_log)
    finally:
        _stop(process)
    stopped = _training_run(var, run_id)
    assert (stopped["status"], stopped["attempts"], stopped["error"]) == ("queued", 0, "")
    assert "stopped with its worker" in stopped["log"], stopped["log"]

    env["PORT"] = str(free_port())
    second_log = tmp_path / "second.log"
    process = _start(env, second_log)
    try:
        resumed = _wait(
            lambda: (
                (run := _training_run(var, run_id))["status"] == "running"
                and "resumed at step" in run["log"]
                and run
            ),
            what="the run resumed",
            log=var / "log" / "worker-training.log",
        )
        # Ctrl+C in its terminal (an INT to the whole group): the training worker, in its
        # warm shutdown, was left running the run to its end once the script had gone.
        os.killpg(process.pid, signal.SIGINT)
        _assert_all_gone(process, after="Ctrl+C", log=second_log)
    finally:
        _stop(process)
    assert resumed["attempts"] == 1
    # From the checkpoint the first start saved (every 2 steps), not from the start.
    assert int(re.search(r"resumed at step (\d+)", resumed["log"]).group(1)) >= 2


def test_make_run_stops_at_once_when_its_port_is_taken(tmp_path):
    """Another server on the port: the script says so and starts nothing (no first-run
    accounts made, whose passwords a box for the other server would have lost)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {key: value for key, value in os.environ.items() if key not in SERVICE_VARIABLES}
        env |= {"VAR_DIR": str(tmp_path / "var"), "PORT": str(port)}
        finished = subprocess.run(
            ["bash", str(SCRIPT)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT_SECONDS,
        )
    assert finished.returncode != 0
    assert f"Port {port} on 127.0.0.1 is not free" in finished.stderr, finished.stderr
    assert not (tmp_path / "var" / "tandem.sqlite3").exists()
    assert not (tmp_path / "var" / "run-state.json").exists()
