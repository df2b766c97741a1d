"""Fixtures shared by every tier, and what keeps a test run to itself on a busy machine.

- One wait setting: ``TEST_WAIT_SECONDS`` (default 300; CI raises it) is the deadline of every
  wait in the suite (``wait_until``, worker and server start-up, the browser's waits), and four
  times it is the per-test timeout. Nothing asserts how long something took.
- One compute thread per process (``TORCH_THREADS``, default 1) in this process and in the
  workers and servers it starts (config/threads.py).
- Its own PostgreSQL database (``test_<name>_<run id>``) and its own ``redis-server`` on a free
  port, started here and stopped at the end: two runs on one machine share nothing.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from billiard.common import TERMSIGS_DEFAULT, clear_terminate_handler_fired, reset_signals
from celery.utils.nodenames import host_format
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import QuerySet
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerDown

from accounts.services import user_create_trainer
from config.broker import queue_depths
from config.celery import Queue, app
from config.threads import thread_caps_apply
from labeling.conversations.models import Conversation
from labeling.conversations.services import conversation_create
from ranking.projects.models import Project
from sampler.jobs.kinds import job_kind_of
from sampler.jobs.models import Job, JobStatus
from sampler.jobs.services import jobs_tick
from sampler.registry.models import ModelVersion
from sampler.workers.selectors import workers_live
from sampler.workers.services import worker_heartbeat_record
from tests import settings as run_settings

PASSWORD = "a-Strong-test-passw0rd"
ROOT = Path(__file__).resolve().parent.parent

# The deadline of every wait in the suite, in seconds (see above).
WAIT_SECONDS = float(os.environ.get("TEST_WAIT_SECONDS", "300"))
# A name no other run on this machine uses: this run's database and worker names carry it.
RUN_ID = os.environ.get("TEST_RUN_ID") or f"{os.getpid()}_{secrets.token_hex(3)}"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    thread_caps_apply()
    # pytest-timeout's per-test limit follows the wait setting unless given on the command line.
    if config.getoption("timeout", None) is None and not os.environ.get("PYTEST_TIMEOUT"):
        config.option.timeout = 4 * WAIT_SECONDS


def pytest_unconfigure(config: pytest.Config) -> None:
    # The run's own folder for what it writes (tests/settings.py), removed by the run that
    # made it; a file a stopped process still held is no reason to fail the run.
    if run_settings.TEST_VAR_DIR_OWNED:
        shutil.rmtree(run_settings.TEST_VAR_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    """This run's own PostgreSQL test database (SQLite tests run in memory already)."""
    for database in settings.DATABASES.values():
        if database["ENGINE"].endswith("sqlite3"):
            continue
        test = database.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + database['NAME']}_{RUN_ID}"


def wait_until(predicate, *, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), for at most
    ``TEST_WAIT_SECONDS``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met within TEST_WAIT_SECONDS={WAIT_SECONDS:g} s")


def sessions_waiting_for_a_lock() -> int:
    """PostgreSQL sessions on this test database waiting for a lock another one holds. Read
    afresh each time: inside a transaction (the one that holds the lock) PostgreSQL answers
    from the snapshot of its first read until told to drop it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_for_lock_or_end(thread, *, what: str, sessions: int = 1) -> None:
    """Poll until ``thread`` waits for a PostgreSQL lock (this connection holds it) or has
    ended, for at most ``TEST_WAIT_SECONDS``; with ``sessions``, until that many sessions (the
    threads started before it and this one) wait for a lock."""
    deadline = time.monotonic() + WAIT_SECONDS
    while thread.is_alive() and sessions_waiting_for_a_lock() < sessions:
        assert time.monotonic() < deadline, f"{what} neither waited nor finished"
        time.sleep(0.02)


def recording_thread(
    work: Callable[[], object],
    outcome: dict,
    key: str,
    *,
    refusal: tuple[type[Exception], Callable[[Exception], object]] | None = None,
) -> threading.Thread:
    """A thread that runs ``work()`` on a database connection of its own (closed when it
    ends), as a request would, and puts what came of it in ``outcome``: what it returned under
    ``key``; an exception of ``refusal``'s type under "refused", as ``refusal``'s function
    reads it; any other exception's repr under "error" (what a request would answer with a
    500)."""
    refused, reason = refusal or ((), None)

    def run() -> None:
        try:
            outcome[key] = work()
        except refused as error:
            outcome["refused"] = reason(error)
        except Exception as error:
            outcome["error"] = repr(error)
        finally:
            connection.close()

    return threading.Thread(target=run)


@dataclass
class Race:
    """What ``racing`` saw: whether the thread was waiting for a lock the block held."""

    waited: bool = False


@contextmanager
def racing(thread: threading.Thread, *, what: str) -> Iterator[Race]:
    """The block runs in a transaction and takes its locks (its writes not yet committed);
    then ``thread`` starts, and the transaction commits once the thread waits for one of those
    locks or has ended. The thread is then joined, and asserted to have ended."""
    race = Race()
    with transaction.atomic():
        yield race
        thread.start()
        wait_for_lock_or_end(thread, what=what)
        race.waited = thread.is_alive()
    thread.join(WAIT_SECONDS)
    assert not thread.is_alive(), f"{what} did not end"


@contextmanager
def racing_then_freeing(
    saver: threading.Thread, rows: QuerySet, changed: dict, outcome: dict
) -> Iterator[None]:
    """The block runs in a transaction and takes its locks (a save under way, not committed);
    then ``saver`` starts and waits for it; then a third session, queued behind both, locks
    the table of ``rows`` (every read of it waits) and, once it has it (the moment ``saver``'s
    first try is refused), updates ``rows`` with ``changed`` and commits ("freed": None in
    ``outcome``). ``saver``'s answer to its refusal reads the table only after that."""

    def free() -> None:
        with transaction.atomic():
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(rows.model._meta.db_table)
                cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
            rows.update(**changed)

    freer = recording_thread(free, outcome, "freed")
    with transaction.atomic():
        yield
        saver.start()
        wait_for_lock_or_end(saver, what="the second save")
        freer.start()
        wait_for_lock_or_end(freer, what="the third session", sessions=2)
        assert saver.is_alive() and freer.is_alive(), outcome
    for thread in (saver, freer):
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive()


def celery_worker_idle() -> bool:
    """Every queue is empty and no worker holds a task (running, or prefetched)."""
    if any(queue_depths(timeout=WAIT_SECONDS).values()):
        return False
    inspect = app.control.inspect(timeout=1)
    active, reserved = inspect.active(), inspect.reserved()
    if not active or not reserved:
        return False  # no worker answered
    return not any([*active.values(), *reserved.values()])


def run_python(
    *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` (this interpreter) in the repository root with exactly ``env``, within
    the wait deadline; its exit status asserted to be 0 unless ``check`` is false."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )
    if check:
        assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return result


def settings_refusal(environment: dict[str, str], var_dir: Path) -> str:
    """What Django's start says when the settings module reads ``environment`` (this process's
    environment with those values), asserting that it refused them (ImproperlyConfigured)."""
    result = run_python(
        "-c",
        "import django; django.setup()",
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "VAR_DIR": str(var_dir),
            **environment,
        },
        check=False,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr, result.stderr[-5000:]
    return result.stderr


def post_json(client: Client, url: str, data: object = None, *, idempotency_key: str | None = None):
    """POST ``data`` (``{}`` when None) as JSON, with an ``Idempotency-Key`` when given."""
    headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
    body = json.dumps({} if data is None else data)
    return client.post(url, body, content_type="application/json", headers=headers)


# A model server's options for a version served elsewhere (nothing of it is loaded here).
SERVED_OPTIONS = {
    "base_url": "http://server:8000/v1",
    "model": "m",
    "api_key_env": "SERVER_API_KEY",
}


def served_version(name: str, context_length: int, *, active: bool = False) -> ModelVersion:
    """A policy served elsewhere (``openai``: nothing to load here) with a context of
    ``context_length``, written as it stands (no registration's checks)."""
    return ModelVersion.objects.create(
        name=name,
        backend="openai",
        backend_options=SERVED_OPTIONS,
        context_length=context_length,
        is_active=active,
    )


def worker_seen(*, queues: list[str] | None = None, seconds_ago: float = 0.0) -> None:
    """A worker serving ``queues`` (every queue when None), its last heartbeat ``seconds_ago``."""
    now = timezone.now() - timedelta(seconds=seconds_ago)
    worker_heartbeat_record(
        name="worker@testhost",
        queues=[queue.value for queue in Queue] if queues is None else queues,
        hostname="testhost",
        pid=4242,
        started_at=now,
        now=now,
    )


def says_unpublished_until_published(
    client: Client,
    broker: "RecordingBroker",
    *,
    job: Job,
    parts: dict[str, str],
    pages: tuple[str, ...],
) -> None:
    """Check pages against ``job``, started through one of them while ``broker`` was down:
    each part a page polls (as its address in ``parts`` answers an htmx request) says what
    ``parts`` gives for it (that the job is saved but the job queue is unreachable) while the
    job is queued and not published, with a live worker serving its queue; once the broker is
    back and the outbox published it, neither those parts nor the whole ``pages`` say it any
    more: no message at a page's top stays."""
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.queue and job.published_at is None
    worker_seen()
    for _ in range(2):  # polled again, the parts still say it
        for url, said in parts.items():
            assert said in client.get(url, HTTP_HX_REQUEST="true").content.decode()
    broker.down = False
    past_grace = timezone.now() + timedelta(seconds=settings.JOB_PUBLISH_GRACE + 1)
    assert jobs_tick(now=past_grace).republished == 1
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.published_at is not None
    answers = [client.get(url, HTTP_HX_REQUEST="true") for url in parts]
    for answer in [*answers, *(client.get(url) for url in pages)]:
        assert answer.status_code == 200
        assert "job queue is unreachable" not in answer.content.decode()


def polls_only_while_work_can_move(
    client: Client, url: str, *, job: Job, element: str, trigger: str
) -> None:
    """Check a polled part of a page (the element with id ``element``, as ``url`` answers an
    htmx request) against ``job``, a queued job it shows: with no worker seen lately serving
    the job's queue, or only one serving other queues, it does not poll (no ``trigger``) and
    names the queue with a "Check again" form asking ``url``, which answers without htmx too;
    running, or queued with a live worker serving its queue, it polls and says nothing of it."""
    queue = job_kind_of(job).queue_for(job)
    rows = type(job).objects.filter(pk=job.pk)

    def answer() -> tuple[str, str]:
        html = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        tag = re.search(rf'<[a-z]+ id="{re.escape(element)}"[^>]*>', html)
        assert tag is not None, f"no element {element!r} in {html}"
        return tag.group(0), html

    def assert_waits(html_tag: str, html: str) -> None:
        assert trigger not in html_tag and "hx-trigger" not in html_tag
        assert f"serving the {queue} queue," in " ".join(html.split())
        # Said as a status message, as the page's other status messages are.
        assert re.search(r'<p role="status" aria-live="polite">\s*Queued work here', html)
        form = re.search(r'<form id="[^"]*-no-worker"[^>]*action="([^"]*)"[^>]*>', html)
        assert form is not None and form.group(1) == url and "Check again" in html
        assert client.get(url).status_code in {200, 302}  # the button with no JavaScript

    worker_seen(seconds_ago=settings.WORKER_LIVE_SECONDS + 1)  # seen, not lately
    assert_waits(*answer())
    worker_seen(queues=[other.value for other in Queue if other.value != queue])
    assert_waits(*answer())

    rows.update(status=JobStatus.RUNNING)
    tag, html = answer()
    assert trigger in tag and "-no-worker" not in html

    rows.update(status=JobStatus.QUEUED)
    worker_seen(queues=[queue])
    tag, html = answer()
    assert trigger in tag and "-no-worker" not in html


def model_version_admin_fields(version: ModelVersion, **changed) -> dict:
    """What the admin's model version form posts for ``version`` as saved, with ``changed``."""
    return {
        "name": version.name,
        "kind": version.kind,
        "source": version.source,
        "path": version.path,
        "backend": version.backend,
        "backend_options": json.dumps(version.backend_options),
        "context_length": version.context_length or "",
        "metrics": "{}",
        "description": "",
        **changed,
    }


def project_admin_fields(
    client: Client, project: Project, policies: list[tuple[ModelVersion, str]] = ()
) -> dict:
    """What the admin's change page of ``project`` posts back unchanged (as ``client`` reads
    it), with ``policies`` as new rows."""
    page = client.get(reverse("admin:ranking_project_change", args=[project.pk]))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    data = {name: "" if value is None else value for name, value in data.items()}
    data |= {"deadline_0": "", "deadline_1": "", "trainer_groups": []}
    data |= {"policies-TOTAL_FORMS": len(policies), "policies-INITIAL_FORMS": 0}
    data |= {"policies-MIN_NUM_FORMS": 0, "policies-MAX_NUM_FORMS": 1000}
    for index, (version, weight) in enumerate(policies):
        data |= {f"policies-{index}-model_version": version.pk, f"policies-{index}-weight": weight}
    return data


def logged_in_client(user) -> Client:
    """A test client of its own, logged in as ``user`` (one per racing admin)."""
    client = Client()
    client.force_login(user)
    return client


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RedisServer:
    """A ``redis-server`` this test run started, on a free port, with nothing persisted."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_server_start(directory: Path) -> RedisServer:
    """Start a private ``redis-server`` (retrying when another process takes the port first)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH: the integration and browser tiers start their own "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)."
        )
    directory.mkdir(parents=True, exist_ok=True)
    for _attempt in range(5):
        port = free_port()
        log = directory / f"redis-{port}.log"
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--logfile", str(log)],
        )  # fmt: skip
        server = RedisServer(process=process, port=port, log=log)
        deadline = time.monotonic() + WAIT_SECONDS
        while process.poll() is None and time.monotonic() < deadline:
            try:
                info = redis.Redis(port=port, socket_connect_timeout=1).info("server")
                # Ours, not a server someone else started on the same port meanwhile.
                if info["process_id"] == process.pid:
                    return server
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        server.stop()
    pytest.fail(f"redis-server did not start; its last log:\n{log.read_text()[-2000:]}")


def _broker_set(url: str) -> None:
    os.environ["CELERY_BROKER_URL"] = url
    settings.CELERY_BROKER_URL = url
    app.conf.broker_url = url
    # The settings choose the embedded broker's transport for a filesystem URL (config/
    # broker_files.py); any other URL takes the transport its scheme names.
    app.conf.broker_transport = (
        "config.broker_files:Transport" if url.startswith("filesystem://") else None
    )
    # As Celery does after a fork: the next publication takes the pools for the new URL (kombu
    # keeps one per broker URL; the previous broker's stay open for when it is pointed at again).
    app._pool = None
    app.amqp._producer_pool = None


@contextmanager
def broker_at(url: str) -> Iterator[None]:
    """Point this process's Celery app (and the processes it starts) at broker ``url``, and
    back when the block ends.

    Celery reads ``CELERY_BROKER_URL`` from the environment before its configuration, so both
    change."""
    environment_before = os.environ.get("CELERY_BROKER_URL")
    settings_before = settings.CELERY_BROKER_URL
    _broker_set(url)
    try:
        yield
    finally:
        _broker_set(settings_before)
        if environment_before is None:
            os.environ.pop("CELERY_BROKER_URL")
        else:
            os.environ["CELERY_BROKER_URL"] = environment_before


@pytest.fixture(scope="session")
def redis_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This run's own Redis, as the Celery broker of the tests and the workers they start."""
    server = redis_server_start(tmp_path_factory.mktemp("redis"))
    with broker_at(server.url):
        yield server
    server.stop()


class RecordingBroker:
    """Stands in for the broker's publish call: records messages, or fails like a dead Redis."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.down = False

    def send_task(self, name, args=(), queue=None, **options):
        if self.down:
            raise BrokerDown("Error 111 connecting to 127.0.0.1:6399. Connection refused.")
        self.sent.append({"name": name, "args": tuple(args), "queue": queue, **options})


@pytest.fixture
def broker(monkeypatch) -> RecordingBroker:
    """What this process publishes, recorded instead of sent (``broker.down``: refused)."""
    fake = RecordingBroker()
    monkeypatch.setattr(app, "send_task", fake.send_task)
    return fake


@pytest.fixture
def pool_process_signals():
    """This process's terminate signals handled as a Celery pool process's are (billiard's
    handler: a ``SystemExit`` raised wherever the process is, and the mark that it fired);
    restored afterwards."""
    numbers = [signal.Signals[name] for name in TERMSIGS_DEFAULT if hasattr(signal, name)]
    before = {number: signal.getsignal(number) for number in numbers}
    reset_signals()
    try:
        yield
    finally:
        clear_terminate_handler_fired()
        for number, handler in before.items():
            signal.signal(number, handler)


@pytest.fixture(autouse=True)
def _own_broker_for_services(request: pytest.FixtureRequest) -> None:
    """Integration and browser tests publish to this run's Redis, never to a shared broker."""
    if request.node.get_closest_marker("integration") or request.node.get_closest_marker("browser"):
        request.getfixturevalue("redis_broker")


@pytest.fixture(autouse=True)
def _throttle_counters_cleared() -> None:
    """API throttle counters live in the cache (in-process in tests): each test starts with
    none, whatever the tests before it requested."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny, random) chat model with the project's tokenizer and template, built once."""
    from sampler.embedded.build import build_micro_model

    return build_micro_model(tmp_path_factory.mktemp("micro-model"), seed=0)


@pytest.fixture(scope="session")
def dropout_model_dir(micro_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro model with dropout, as most released models have (GPT-2: 0.1)."""
    copy = tmp_path_factory.mktemp("dropout-model") / "model"
    shutil.copytree(micro_model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    config.update(resid_pdrop=0.3, embd_pdrop=0.3, attn_pdrop=0.3)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.fixture(scope="session")
def untemplated_model_dir(micro_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro model with no chat template: its tokenizer loads, but no chat can be rendered."""
    copy = tmp_path_factory.mktemp("untemplated-model") / "model"
    shutil.copytree(micro_model_dir, copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    (copy / "chat_template.jinja").unlink(missing_ok=True)
    shutil.rmtree(copy / "additional_chat_templates", ignore_errors=True)
    return copy


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of this test's own, offline; ``hub_cache(repo_id, folder)``
    puts a model folder in it as the hub's download would (refs/main -> a snapshot)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def add(repo_id: str, folder: Path) -> Path:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        commit = "0123456789abcdef0123456789abcdef01234567"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        snapshot = repo / "snapshots" / commit
        shutil.copytree(folder, snapshot)
        return snapshot

    return add


@pytest.fixture
def trainer(db):
    return user_create_trainer(username="tess", password=PASSWORD)


@pytest.fixture
def other_trainer(db):
    return user_create_trainer(username="otto", password=PASSWORD)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser(username="ada", password=PASSWORD, email="")


@pytest.fixture
def plain_user(db):
    """Logged in, but in no role."""
    return get_user_model().objects.create_user(username="nobody", password=PASSWORD)


@pytest.fixture
def conversation(trainer) -> Conversation:
    """A conversation of ``trainer``'s, with no turn yet."""
    return conversation_create(owner=trainer, title="Weekend plans")


@pytest.fixture
def trainer_client(trainer) -> Client:
    client = Client()
    client.force_login(trainer)
    return client


@pytest.fixture
def admin_client_(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def policy(db, micro_model_dir):
    """The micro model registered as the active policy."""
    from sampler.registry.services import model_version_promote, model_version_register

    version = model_version_register(name="micro", path=str(micro_model_dir), source="registered")
    return model_version_promote(version=version)


@pytest.fixture
def fresh_backends() -> Iterator[None]:
    """No serving backend cached from an earlier test, and none left for the next one."""
    from sampler.generation.backends import backends_clear

    backends_clear()
    yield
    backends_clear()


class FlagEverything:
    """A content filter (``CONTENT_FILTER`` names it by its dotted path) that flags every text,
    an empty one too, in the category "everything". The built-in filter finds nothing in an
    empty reply, and the tiny model's sampled replies are now and then empty."""

    name = "flag-everything"
    version = "1"

    def score(self, texts):
        from sampler.moderation.filters import FilterResult

        return [FilterResult(True, ["everything"], {}) for _ in texts]


@pytest.fixture
def flag_everything(settings):
    """A content filter that flags every text (``FlagEverything``)."""
    settings.CONTENT_FILTER = "tests.conftest.FlagEverything"
    return settings


@pytest.fixture
def secrets_filter(settings):
    """The built-in filter flagging the word "password" (category "secrets"), nothing else."""
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password"]}
    settings.CONTENT_FILTER_PATTERNS = {}
    return settings


@dataclass(frozen=True)
class SessionWorker:
    """The run's Celery worker process and its node name (``name@host``)."""

    process: subprocess.Popen
    name: str

    def consume(self, consuming: bool) -> None:
        """Start (or stop) taking tasks from every queue of ``config.celery.Queue``, once the
        worker has answered that it did."""
        command = app.control.add_consumer if consuming else app.control.cancel_consumer
        for queue in Queue:
            replies = command(
                queue.value, destination=[self.name], reply=True, timeout=WAIT_SECONDS
            )
            assert replies, f"the worker {self.name} did not answer about the queue {queue.value}"

    def queues_consumed(self) -> set[str]:
        """The queues the worker takes tasks from now, as it says."""
        answers = app.control.inspect(destination=[self.name], timeout=WAIT_SECONDS).active_queues()
        assert answers, f"the worker {self.name} did not answer"
        return {queue["name"] for queue in answers[self.name]}


def queues_purged() -> None:
    """Every queue of ``config.celery.Queue`` on this run's Redis emptied."""
    with app.connection_for_write() as broker_connection:
        channel = broker_connection.default_channel
        for queue in Queue:
            channel.queue_purge(queue.value)


@pytest.fixture(scope="session")
def session_celery_worker(django_db_setup, django_db_blocker, micro_model_dir, redis_broker):
    """A real Celery worker process on this run's Redis, writing to this run's database; it
    beats every second (sampler.workers). It takes tasks only while a test asks for
    ``celery_worker``."""
    db = connection.settings_dict
    if connection.vendor != "postgresql":
        pytest.fail("The worker tests need DATABASE_URL=postgres://... (run them via `make test`).")
    database_url = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_broker.url,
        "SAMPLER_MODEL": str(micro_model_dir),
        # Models trained by the worker go next to the test model, not into the repository's var/.
        "MODEL_ROOT": str(Path(micro_model_dir).parent / "worker-models"),
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_LIVE_SECONDS": "30",
    }
    name = f"test-{RUN_ID}-{uuid.uuid4().hex[:4]}@%h"
    log = open(Path(micro_model_dir).parent / "worker.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-Q", ",".join(queue.value for queue in Queue),
            "--concurrency", "1", "-n", name, "--without-gossip", "--without-mingle",
            "-l", "INFO",
        ],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + WAIT_SECONDS
    while not app.control.ping(timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail("The Celery worker did not start:\n" + (Path(log.name).read_text()[-3000:]))
    worker = SessionWorker(process=process, name=host_format(name))
    worker.consume(False)
    yield worker
    process.terminate()
    try:
        process.wait(timeout=WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def celery_worker(session_celery_worker, transactional_db) -> Iterator[subprocess.Popen]:
    """The run's Celery worker process (``session_celery_worker``), taking tasks from every
    queue of this run's Redis for this test only: the queues are emptied of what earlier tests
    left in them, and once the test ends the worker finishes what it queued and stops taking
    tasks, before the test database is emptied. A worker busy in a test that did not ask for
    one could hold row locks while the database is emptied (a deadlock), or claim a job that
    test queued for itself."""
    queues_purged()
    session_celery_worker.consume(True)
    # Its heartbeat, gone with the last test's rows, is back: the pages poll the jobs it serves.
    wait_until(lambda: bool(workers_live()), what="the worker's heartbeat")
    yield session_celery_worker.process
    wait_until(celery_worker_idle, what="the worker to finish what the test queued")
    session_celery_worker.consume(False)
