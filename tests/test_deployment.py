"""The deployment files agree with the code: docker-compose.yml (Docker is not run here) against
config.celery's queues and worker groups, the settings and the Dockerfile; the Makefile and CI
entry point; `manage.py check --deploy` for production settings."""

import importlib.util
import json
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from config.celery import WORKER_GROUPS, Queue
from tests.conftest import run_python

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()
SETTINGS_SOURCE = (ROOT / "config" / "settings.py").read_text()
APP_SERVICES = [
    name for name, service in SERVICES.items() if service.get("image", "").startswith("tandem:")
]
# Variables the app reads (config/settings.py and the modules it reads them through).
APP_VARIABLES = set(re.findall(r'env_\w+\(\s*"([A-Z0-9_]+)"', SETTINGS_SOURCE)) | {
    "TORCH_THREADS",  # config/threads.py
    "WEB_THREADS",  # config/gunicorn.py
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus_client, config/metrics.py and config/gunicorn.py
}


def _command(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else command


def _queues(service: dict) -> list[str]:
    command = _command(service)
    return command[command.index("-Q") + 1].split(",")


def _substituted(value: str) -> str:
    """A compose value with ${NAME:-default} replaced by its default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies():
    for name, service in SERVICES.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES
            assert condition == {"condition": "service_healthy"}, (name, dependency)


def test_a_stopped_worker_hands_its_job_back_rather_than_waiting_to_be_killed():
    workers = [name for name, service in SERVICES.items() if "worker" in _command(service)]
    assert {f"worker-{group}" for group in WORKER_GROUPS} | {"worker-gpu"} <= set(workers)
    for name in workers:
        assert SERVICES[name]["stop_signal"] == "SIGQUIT", name
        assert SERVICES[name]["stop_grace_period"] == "30s", name


def test_one_cpu_worker_per_worker_group_consumes_exactly_its_queues():
    for group, queues in WORKER_GROUPS.items():
        service = SERVICES[f"worker-{group}"]
        assert "profiles" not in service  # started by a plain `docker compose up`
        command = _command(service)
        # Bulk groups run at a lower CPU priority than the interactive one (as `make run`).
        prefix = ["nice", "-n", "10"] if group in {"generation", "training"} else []
        assert command[: len(prefix)] == prefix
        assert command[len(prefix) : len(prefix) + 4] == ["celery", "-A", "config", "worker"]
        assert _queues(service) == [queue.value for queue in queues]
        assert f"{group}@%h" in _command(service)
    plain_up_workers = [
        name for name, service in SERVICES.items()
        if "profiles" not in service and "worker" in _command(service)
    ]  # fmt: skip
    consumed = {queue for name in plain_up_workers for queue in _queues(SERVICES[name])}
    assert consumed == {queue.value for queue in Queue}


def test_a_plain_up_needs_no_gpu_and_the_gpu_worker_is_behind_its_profile():
    for name, service in SERVICES.items():
        if "profiles" not in service:
            assert "devices" not in service.get("deploy", {}).get("resources", {}).get(
                "reservations", {}
            ), name
    gpu = SERVICES["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    ]
    assert gpu["build"]["args"]["VARIANT"] == "cuda"
    assert set(_queues(gpu)) == {Queue.INTERACTIVE, Queue.GENERATION, Queue.TRAINING}
    # The CPU workers of those queues can be scaled to 0 when the GPU worker takes them.
    for queue in _queues(gpu):
        assert SERVICES[f"worker-{queue}"]["deploy"]["replicas"] == "${CPU_WORKERS:-1}"


def test_flower_is_optional():
    assert SERVICES["flower"]["profiles"] == ["flower"]
    assert SERVICES["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_beat_runs_once_and_workers_prove_liveness_with_their_heartbeat_file():
    assert [name for name in APP_SERVICES if "beat" in _command(SERVICES[name])] == ["beat"]
    for name in APP_SERVICES:
        service = SERVICES[name]
        if "worker" not in _command(service):
            continue
        heartbeat_file = service["environment"]["WORKER_HEARTBEAT_FILE"]
        assert heartbeat_file in service["healthcheck"]["test"][1], name
        assert service["depends_on"]["web"] == {"condition": "service_healthy"}  # migrated


def test_web_migrates_serves_with_gunicorn_and_is_checked_on_healthz():
    web = SERVICES["web"]
    script = _command(web)[-1]
    assert script.index("manage.py migrate") < script.index("gunicorn config.wsgi:application")
    assert "--config python:config.gunicorn" in script
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert _substituted(web["ports"][0]) == "8000:8000"


def test_app_services_use_named_volumes_on_paths_the_image_gives_its_user():
    user = re.findall(r"^USER (\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert user == ["tandem"]
    owned = re.search(r"mkdir -p ([^&\\]+)\\?\s*&& chown -R tandem:tandem (\S+)", DOCKERFILE)
    assert owned, "the Dockerfile creates and chowns the app's writable directories"
    created = owned.group(1).split()
    for name in APP_SERVICES:
        for volume in SERVICES[name].get("volumes", []):
            source, target = volume.split(":")[:2]
            assert source in COMPOSE["volumes"], f"{name}: {source} is not a named volume"
            assert target in created, f"{name}: {target} is not created for the tandem user"


def test_web_and_every_worker_share_one_hugging_face_cache():
    """A hub id is registered only when its model is in the web process's cache, then loaded
    by a worker: with a cache of each container's own, every worker looked for it in vain."""
    loading = ["web"] + [
        name for name, service in SERVICES.items() if {"celery", "worker"} <= set(_command(service))
    ]
    assert len(loading) > 4
    caches = set()
    for name in loading:
        home = SERVICES[name]["environment"].get("HF_HOME")
        assert home, f"{name} sets no HF_HOME"
        mounted = [
            volume.split(":")[0]
            for volume in SERVICES[name]["volumes"]
            if volume.split(":")[1] == home
        ]
        assert mounted, f"{name} mounts no volume on its HF_HOME {home}"
        caches.add((home, mounted[0]))
    assert len(caches) == 1, caches
    ((_, volume),) = caches
    assert volume in COMPOSE["volumes"]


def test_app_services_run_production_mode_on_the_compose_database_and_broker():
    for name in APP_SERVICES:
        environment = SERVICES[name]["environment"]
        assert environment["TANDEM_MODE"] == "production"
        assert _substituted(environment["DATABASE_URL"]).startswith(
            "postgres://tandem:tandem@postgres:"
        )
        assert environment["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert SERVICES[name]["env_file"] == ".env"


def test_env_example_serves_plain_http_on_localhost_and_names_only_real_settings():
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        setting = re.match(r"^#?\s?([A-Z][A-Z0-9_]+)=(\S*)", line)
        if setting:
            values.setdefault(setting.group(1), []).append(setting.group(2))
    compose_only = {
        "PORT", "POSTGRES_PASSWORD", "TORCH_CPU_INDEX_URL", "TORCH_CUDA_INDEX_URL",
        "CPU_WORKERS", "FLOWER_BASIC_AUTH", "SERVED_MODEL", "SERVED_MAX_MODEL_LEN",
    }  # fmt: skip
    assert set(values) - compose_only <= APP_VARIABLES, set(values) - compose_only - APP_VARIABLES
    assert values["ALLOWED_HOSTS"][0] == "localhost,127.0.0.1"
    assert values["HTTPS"][0] == "false"
    assert "http://localhost:8000" in values["CSRF_TRUSTED_ORIGINS"][0].split(",")
    compose_text = (ROOT / "docker-compose.yml").read_text()
    for variable in re.findall(r"\$\{([A-Z0-9_]+)", compose_text):
        assert variable in compose_only, variable


def test_settings_from_env_example_serve_plain_http_on_localhost(tmp_path):
    environment = _env_example() | {
        # The keys filled in as the file says (its placeholders are refused).
        "SECRET_KEY": "s" * 50,
        "EXPORT_PSEUDONYM_KEY": "p" * 50,
        "DATABASE_URL": "postgres://tandem:tandem@postgres:5432/tandem",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
        "VAR_DIR": str(tmp_path),
    }
    printed = _python(
        "from django.conf import settings as s; "
        "print(s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
        "getattr(s, 'SECURE_SSL_REDIRECT', False), s.DEBUG)",
        environment,
    )
    assert printed.split() == ["['localhost',", "'127.0.0.1']", "False", "False", "False", "False"]


def test_the_env_example_keys_left_as_they_are_refuse_to_start(tmp_path):
    """Its placeholders are long enough but public: pseudonyms keyed by one could be undone by
    trying every user id, and a known SECRET_KEY forges signed data."""
    environment = _env_example() | {
        "DATABASE_URL": "postgres://tandem:tandem@postgres:5432/tandem",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
        "VAR_DIR": str(tmp_path),
    }
    for name in ("SECRET_KEY", "EXPORT_PSEUDONYM_KEY"):
        assert len(environment[name]) >= 32
        filled = environment | {other: "k" * 50 for other in ("SECRET_KEY", "EXPORT_PSEUDONYM_KEY")}
        left = filled | {name: environment[name]}
        result = _run_python("", left, check=False)
        assert result.returncode != 0 and "placeholder" in result.stderr and name in result.stderr


def _env_example() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def _python(code: str, environment: dict[str, str], *args: str) -> str:
    result = _run_python(code, environment, *args)
    return result.stdout + result.stderr


def _run_python(code: str, environment: dict[str, str], *args: str, check: bool = True):
    clean = {
        k: v for k, v in os.environ.items()
        # Not the test run's own (the browser tier's conftest allows async-unsafe ORM calls).
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "TANDEM_MODE", "SECRET_KEY",
                     "DJANGO_ALLOW_ASYNC_UNSAFE", "EXPORT_PSEUDONYM_KEY"}
    }  # fmt: skip
    return run_python(
        *(args or ("-c", "import django; django.setup(); " + code)),
        env=clean | environment | {"DJANGO_SETTINGS_MODULE": "config.settings"},
        check=check,
    )


def test_check_deploy_is_clean_for_production_settings(tmp_path):
    """A real deployment: HTTPS on (the production default), the variables it requires."""
    environment = {
        "TANDEM_MODE": "production",
        "SECRET_KEY": "k" * 20 + "-a-production-secret-key-for-the-check",
        "DATABASE_URL": "postgres://tandem:secret@db.internal:5432/tandem",
        "CELERY_BROKER_URL": "redis://redis.internal:6379/0",
        "ALLOWED_HOSTS": "tandem.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://tandem.example.org",
        "EXPORT_PSEUDONYM_KEY": "e" * 20 + "-a-pseudonym-key-for-the-check",
        "VAR_DIR": str(tmp_path),
    }
    output = _python("", environment, "manage.py", "check", "--deploy", "--fail-level", "WARNING")
    assert "System check identified no issues" in output


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_the_dockerfile_builds_a_cpu_and_a_cuda_variant_with_torch_from_an_explicit_index(variant):
    assert re.search(rf"^FROM base AS torch-{variant}$", DOCKERFILE, flags=re.MULTILINE)
    stage = DOCKERFILE.split(f"AS torch-{variant}")[1].split("FROM ")[0]
    assert 'ARG TORCH_INDEX_URL=""' in stage
    assert '--index-url "$TORCH_INDEX_URL"' in stage
    assert "FROM torch-${VARIANT} AS app" in DOCKERFILE


def test_the_makefile_installs_torch_from_torch_index_url_and_tests_what_ci_runs():
    assert re.search(r"^TORCH_INDEX_URL \?=\s*$", MAKEFILE, flags=re.MULTILINE)
    assert "--index-url $(TORCH_INDEX_URL)" in MAKEFILE
    assert re.search(
        r"^test: setup check-chromium lint test-unit test-integration test-browser$",
        MAKEFILE,
        flags=re.MULTILINE,
    )
    # `make test` never installs system packages; `make chromium` does, when asked.
    test_targets = MAKEFILE.split("\ncheck-chromium:")[1].split("\nchromium:")[0]
    assert "apt-get install" not in test_targets and "apt-get update" not in test_targets
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # The vLLM tier in its own venv right after the others.
    assert ci[-2:] == ["make test", "make test-vllm"]
    # The README's test command is the one CI runs.
    assert "```sh\nmake test\n```" in (ROOT / "README.md").read_text()


def test_make_run_shows_first_run_passwords_once_and_keeps_no_copy_on_disk(
    tmp_path, monkeypatch, capsys
):
    spec = importlib.util.spec_from_file_location(
        "embedded_ready", ROOT / "scripts" / "embedded_ready.py"
    )
    embedded_ready = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embedded_ready)
    monkeypatch.setattr(
        embedded_ready, "wait_ready", lambda url, deadline, alive: {"status": "ready"}
    )
    state_file = tmp_path / "run-state.json"
    credential = "admin    username=admin  password=s3cret-first-run"
    state_file.write_text(
        json.dumps({"worker_groups": {"default": ["default"]}, "credentials": [credential]})
    )
    assert (
        embedded_ready.main("http://127.0.0.1:8000", "8000", state_file, 0.0, "var", os.getpid())
        == 0
    )
    assert credential in capsys.readouterr().out
    # The state file stays for the workers' groups, without the passwords.
    state = json.loads(state_file.read_text())
    assert "s3cret-first-run" not in state_file.read_text()
    assert state["worker_groups"] == {"default": ["default"]}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_run_finds_its_port_taken_before_it_starts_anything():
    import socket

    port_free = _script("port_free")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        problem = port_free.port_problem("127.0.0.1", port)
        assert problem is not None and f"Port {port} on 127.0.0.1 is not free" in problem
        assert "PORT=" in problem
    assert port_free.port_problem("127.0.0.1", port) is None  # closed: free again
    # An IPv6 host is given in brackets, as runserver takes it.
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert "is not free" in port_free.port_problem("[::1]", port)
    assert port_free.port_problem("[::1]", port) is None


def test_the_ready_box_says_so_when_the_web_server_of_this_run_has_exited(
    tmp_path, monkeypatch, capsys
):
    """Another server answering on the port (its own failed to start) is not this run ready:
    the box says the server exited, and still shows the first-run passwords, never shown else."""
    import subprocess

    embedded_ready = _script("embedded_ready")
    monkeypatch.setattr(
        embedded_ready, "wait_ready", lambda url, deadline, alive: {"status": "ready"}
    )
    exited = subprocess.Popen(["true"])
    exited.wait()
    state_file = tmp_path / "run-state.json"
    credential = "admin    username=admin  password=s3cret-first-run"
    state_file.write_text(
        json.dumps({"worker_groups": {"default": ["default"]}, "credentials": [credential]})
    )
    assert embedded_ready.main("http://x", "8000", state_file, 0.0, "var", exited.pid) == 1
    printed = capsys.readouterr().out
    assert "Tandem is NOT ready" in printed and "the web server exited" in printed
    assert credential in printed


def test_make_run_writes_the_first_run_passwords_readable_by_their_owner_only(
    tmp_path, monkeypatch
):
    spec = importlib.util.spec_from_file_location(
        "embedded_prepare", ROOT / "scripts" / "embedded_prepare.py"
    )
    embedded_prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(embedded_prepare)

    def command(name, stdout=None, **options):
        if name == "bootstrap":
            stdout.write("admin    username=admin  password=s3cret-first-run\n")

    monkeypatch.setattr(embedded_prepare, "call_command", command)
    state_file = tmp_path / "run-state.json"
    state_file.write_text("{}")
    state_file.chmod(0o644)  # an earlier run's, or one made by hand
    embedded_prepare.main(state_file)
    assert "s3cret-first-run" in state_file.read_text()
    assert state_file.stat().st_mode & 0o777 == 0o600


def test_node_modules_is_never_part_of_the_checkout():
    """npm's folder (``make`` installs it; a developer may link one in from elsewhere) is local:
    committed as a link, a fresh clone's static files (htmx, icons) would be read from wherever
    the link pointed on its author's machine."""
    import subprocess

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    assert git("ls-files", "--", "node_modules").stdout == ""
    # Ignored whether it is a folder or a link to one.
    assert git("check-ignore", "--no-index", "-q", "node_modules").returncode == 0
