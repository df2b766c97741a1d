import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import run_python

ROOT = Path(__file__).resolve().parent.parent


# Everything production mode needs to start; tests take one away or add one.
PRODUCTION = {
    "TANDEM_MODE": "production",
    "SECRET_KEY": "x" * 50,
    "DATABASE_URL": "postgres://u@127.0.0.1:5432/db",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
    "ALLOWED_HOSTS": "tandem.example.org",
    "EXPORT_PSEUDONYM_KEY": "p" * 40,
}


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "TANDEM_MODE",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "VAR_DIR",
            "EXPORT_PSEUDONYM_KEY",
        }
    }
    # The run's own folder (tests/settings.py), not the checkout's var/, unless a test names one.
    environment["VAR_DIR"] = str(settings.VAR_DIR)
    environment.update(env)
    return run_python(
        "-c",
        "import config.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])",
        env=environment,
        check=False,
    )


def test_production_mode_refuses_to_start_without_a_secret_key():
    result = _import_settings(TANDEM_MODE="production")
    assert result.returncode != 0
    assert "refuses to start without a SECRET_KEY" in result.stderr


def test_the_embedded_default_makes_its_own_secret_key_once_and_keeps_it(tmp_path):
    """No public key: each install its own random one, under VAR_DIR, readable by its owner
    only, the same for every process (web, workers) and every later start."""
    read = [
        run_python(
            "-c",
            "import config.settings as s; print(s.SECRET_KEY)",
            env={
                **{k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "TANDEM_MODE"}},
                "VAR_DIR": str(var),
            },
        ).stdout.strip()
        for var in (tmp_path / "one", tmp_path / "one", tmp_path / "two")
    ]
    assert read[0] == read[1] != read[2] and len(read[0]) >= 50
    assert "change-me" not in read[0]
    assert (tmp_path / "one" / "secret.key").stat().st_mode & 0o777 == 0o600


def test_production_mode_starts_with_a_real_secret_key_and_debug_off():
    result = _import_settings(**PRODUCTION)
    assert result.returncode == 0, result.stderr
    # PostgreSQL through django-prometheus's wrapper of Django's backend (query metrics).
    assert result.stdout.split() == ["False", "django_prometheus.db.backends.postgresql"]


@pytest.mark.parametrize("debug", ["true", "1", "yes", "on"])
def test_production_mode_refuses_to_start_with_debug_on(debug):
    """DEBUG shows settings, SQL and stack traces to anyone who makes a request fail."""
    result = _import_settings(**PRODUCTION, DEBUG=debug)
    assert result.returncode != 0
    assert "TANDEM_MODE=production refuses to start with DEBUG on" in result.stderr


def test_production_mode_without_allowed_hosts_says_which_setting_is_missing():
    without = {k: v for k, v in PRODUCTION.items() if k != "ALLOWED_HOSTS"}
    result = _import_settings(**without)
    assert result.returncode != 0
    assert "needs ALLOWED_HOSTS" in result.stderr


def test_embedded_default_uses_sqlite(tmp_path):
    environment = {"VAR_DIR": str(tmp_path)}
    result = _import_settings(**environment)
    assert result.returncode == 0, result.stderr
    assert "sqlite3" in result.stdout
    assert (tmp_path / "celery-broker").is_dir()


def test_production_mode_refuses_to_fall_back_to_sqlite():
    result = _import_settings(TANDEM_MODE="production", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "DATABASE_URL and CELERY_BROKER_URL" in result.stderr


def test_unknown_mode_is_rejected():
    result = _import_settings(TANDEM_MODE="staging")
    assert result.returncode != 0 and "TANDEM_MODE" in result.stderr


def test_production_mode_refuses_to_start_without_an_export_pseudonym_key():
    without = {k: v for k, v in PRODUCTION.items() if k != "EXPORT_PSEUDONYM_KEY"}
    result = _import_settings(**without)
    assert result.returncode != 0
    assert "needs EXPORT_PSEUDONYM_KEY" in result.stderr


def test_export_pseudonym_key_is_never_the_default_secret_key():
    result = _import_settings(EXPORT_PSEUDONYM_KEY="tandem-embedded-default-insecure-key-change-me")
    assert result.returncode != 0
    assert "EXPORT_PSEUDONYM_KEY must be at least 32 random characters" in result.stderr


def test_embedded_default_makes_one_random_pseudonym_key_per_install_under_var(tmp_path):
    def key_of(var_dir) -> str:
        result = run_python(
            "-c",
            "import config.settings as s; print(s.EXPORT_PSEUDONYM_KEY)",
            env={k: v for k, v in os.environ.items() if k != "EXPORT_PSEUDONYM_KEY"}
            | {"VAR_DIR": str(var_dir), "TANDEM_MODE": "embedded"},
        )
        return result.stdout.strip()

    first, again = key_of(tmp_path / "one"), key_of(tmp_path / "one")
    other = key_of(tmp_path / "two")
    assert first == again and first != other and len(first) >= 32
    assert "insecure" not in first
    assert (tmp_path / "one" / "export-pseudonym.key").stat().st_mode & 0o077 == 0
    # var/ is never committed.
    assert "var/" in (ROOT / ".gitignore").read_text().split()


def test_a_generation_max_n_past_what_a_job_stores_refuses_to_start():
    """A job's n is stored under a database constraint (1 to 64): a larger setting would turn
    every request past 64 into the database's error."""
    for value in ("65", "0"):
        result = _import_settings(GENERATION_MAX_N=value)
        assert result.returncode != 0
        assert (
            f"GENERATION_MAX_N must be between 1 and 64 (replies per generation job), got {value}"
            in result.stderr
        )
    assert _import_settings(GENERATION_MAX_N="64").returncode == 0


def test_an_api_throttle_rate_drf_cannot_read_refuses_to_start():
    """DRF reads a rate only when a request comes: a bad one would answer every API request
    with a 500 instead of stopping the start."""
    for name in ("API_THROTTLE_USER", "API_THROTTLE_ANON"):
        for value in ("1200 per minute", "1200/fortnight", "", "0/minute"):
            result = _import_settings(**{name: value})
            assert result.returncode != 0, (name, value)
            assert f"{name} must be a number of requests per second, minute" in result.stderr
    assert _import_settings(API_THROTTLE_USER="10/s", API_THROTTLE_ANON="5/hour").returncode == 0


def test_a_metrics_network_that_is_not_one_refuses_to_start():
    """/metrics reads the networks at each scrape: a bad one answered every scrape with a 500."""
    for value in ("localhost", "127.0.0.0/8,10.0.0.0/33"):
        result = _import_settings(METRICS_ALLOWED_CIDRS=value)
        assert result.returncode != 0, value
        assert "METRICS_ALLOWED_CIDRS must be networks" in result.stderr
    assert _import_settings(METRICS_ALLOWED_CIDRS="10.0.0.0/8, ::1/128").returncode == 0


def test_an_api_throttle_rate_drf_reads_starts_also_with_a_plural_period():
    """DRF reads the period's first letter: `5000/hours` throttled as meant before the start
    checked rates, and must still start."""
    result = _import_settings(API_THROTTLE_USER="5000/hours", API_THROTTLE_ANON="30/minutes")
    assert result.returncode == 0, result.stderr
    assert _import_settings(API_THROTTLE_ANON="2/seconds").returncode == 0
    assert _import_settings(API_THROTTLE_USER="100/days").returncode == 0


@pytest.mark.parametrize(
    "name, values, sentence",
    [
        # A threshold of 5 never flags; a word stopped the start without naming the setting.
        ("CONTENT_FILTER_THRESHOLD", ("5", "-0.1", "high", "nan"), "a number between 0 and 1"),
        ("SENTRY_TRACES_SAMPLE_RATE", ("1.5", "-1", "all"), "a number between 0 and 1"),
        ("BROKER_PROBE_TIMEOUT", ("0", "-2", "inf", "soon"), "a number above 0"),
        # Every project's defaults, bounded as a project's own: K 0 or 500 failed every task's
        # sampling (a generation job takes 1 to GENERATION_MAX_N replies), an overlap of 0
        # filled the pool with tasks never offered.
        ("RANKING_ALTERNATIVES", ("0", "500"), "an integer between 1 and 16"),
        ("RANKING_OVERLAP", ("0", "500"), "an integer between 1 and 50"),
        ("RANKING_POOL_SIZE", ("-1", "5000"), "an integer between 0 and 1000"),
        # The outbox and the sweeper: a batch of 0 republished and swept nothing (jobs whose
        # message was lost waited forever), a negative one failed every tick; a tick of 0
        # seconds ran without pause.
        ("JOB_TICK_BATCH", ("0", "-5"), "an integer of at least 1"),
        ("JOB_TICK_SECONDS", ("0", "-1"), "an integer of at least 1"),
        ("JOB_PUBLISH_GRACE", ("-1",), "an integer of at least 0"),
        # Shorter than a lease, a tab still showing a lease an undo gave back heard 404.
        ("UNDO_REMOVAL_TTL_SECONDS", ("899", "0"), "an integer of at least 900"),
        # A token cap of 0 refused every generation; a batch of 0 sampled a job and none of the
        # jobs behind it (a limit of -1); a worker of 0 processes took nothing; a lease under a
        # minute is given back before a ranking can be written; a percentage past 100 flags no
        # one, and 0 everyone; a refresh every 0 seconds ran without pause.
        ("GENERATION_MAX_NEW_TOKENS", ("0", "-5"), "an integer of at least 1"),
        ("GENERATION_BATCH_JOBS", ("0", "-1"), "an integer of at least 1"),
        ("CELERY_WORKER_CONCURRENCY", ("0",), "an integer of at least 1"),
        ("RANKING_MAX_NEW_TOKENS", ("0",), "an integer of at least 1"),
        ("RANKING_LEASE_SECONDS", ("59", "0"), "an integer of at least 60"),
        ("RANKING_DEMAND_WINDOW_SECONDS", ("0",), "an integer of at least 1"),
        ("RANKING_OUTLIER_PERCENT", ("0", "101"), "an integer between 1 and 100"),
        ("RANKING_OUTLIER_MIN_RANKINGS", ("0",), "an integer of at least 1"),
        ("TRUST_REFRESH_SECONDS", ("0", "-300"), "an integer of at least 1"),
        *[
            (name, ("-1",), "an integer of at least 0")
            for name in (
                "GENERATION_MAX_UNFINISHED_PER_USER",
                "RANKING_TASKS_PER_ACTIVE_TRAINER",
                "RANKING_FAST_SUBMIT_SECONDS",
                "RANKING_UNDO_SECONDS",
            )
        ],
        # A negative time limit reached Celery as one already past: every job stopped at once.
        *[
            (name, ("-1",), "an integer of at least 0")
            for name in (
                "GENERATION_TIME_LIMIT",
                "TRAINING_TIME_LIMIT",
                "COMPARISON_TIME_LIMIT",
                "ATTACK_RUN_TIME_LIMIT",
                "EXPORT_TIME_LIMIT",
            )
        ],
    ],
)
def test_a_number_setting_out_of_its_range_refuses_to_start_naming_it(name, values, sentence):
    for value in values:
        result = _import_settings(**{name: value})
        assert result.returncode != 0, value
        assert f"{name} must be {sentence}, got {value!r}" in result.stderr


def test_number_settings_at_the_edges_of_their_ranges_start():
    accepted = _import_settings(
        CONTENT_FILTER_THRESHOLD="0.9",
        SENTRY_TRACES_SAMPLE_RATE="1",
        BROKER_PROBE_TIMEOUT="0.5",
        RANKING_ALTERNATIVES="16",
        RANKING_OVERLAP="50",
        RANKING_POOL_SIZE="0",
        JOB_TICK_BATCH="1",
        JOB_TICK_SECONDS="1",
        JOB_PUBLISH_GRACE="0",
        UNDO_REMOVAL_TTL_SECONDS="900",
        GENERATION_TIME_LIMIT="0",
        TRAINING_TIME_LIMIT="0",
        GENERATION_MAX_NEW_TOKENS="1",
        GENERATION_BATCH_JOBS="1",
        GENERATION_MAX_UNFINISHED_PER_USER="0",
        CELERY_WORKER_CONCURRENCY="1",
        RANKING_MAX_NEW_TOKENS="1",
        RANKING_LEASE_SECONDS="60",
        RANKING_DEMAND_WINDOW_SECONDS="1",
        RANKING_OUTLIER_PERCENT="100",
        RANKING_OUTLIER_MIN_RANKINGS="1",
        TRUST_REFRESH_SECONDS="1",
        RANKING_TASKS_PER_ACTIVE_TRAINER="0",
        RANKING_FAST_SUBMIT_SECONDS="0",
        RANKING_UNDO_SECONDS="0",
    )
    assert accepted.returncode == 0, accepted.stderr


@pytest.mark.parametrize("name", ["VAR_DIR", "MODEL_ROOT", "EXPORT_ROOT"])
def test_a_folder_setting_given_as_a_relative_path_refuses_to_start_naming_it(name, tmp_path):
    """A relative folder is another folder for each process started elsewhere: an export a
    worker wrote was a 404 to the web server, which read its path from its own folder."""
    for value in ("var/exports", "", "./models"):
        result = _import_settings(**{name: value})
        assert result.returncode != 0, value
        assert f"{name} must be an absolute path, got {value!r}" in result.stderr
    assert _import_settings(**{name: str(tmp_path / "folder")}).returncode == 0


def test_a_test_run_writes_its_files_outside_the_checkout():
    """Exports, models, uploads, the embedded broker's folders and the pseudonym key of a test
    run go to a folder of the run's own, never into the checkout's var/."""
    folders = {
        "VAR_DIR": settings.VAR_DIR,
        "EXPORT_ROOT": settings.EXPORT_ROOT,
        "MODEL_ROOT": settings.MODEL_ROOT,
        "MEDIA_ROOT": settings.MEDIA_ROOT,
        "CELERY_BROKER_DIR": settings.CELERY_BROKER_DIR,
    }
    inside = {
        name: str(folder)
        for name, folder in folders.items()
        if Path(folder).resolve().is_relative_to(ROOT)
    }
    assert inside == {}
