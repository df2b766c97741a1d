import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import WAIT_SECONDS

ROOT = Path(__file__).resolve().parent.parent


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"SECRET_KEY", "TANDEM_MODE", "DATABASE_URL", "CELERY_BROKER_URL", "VAR_DIR"}
    }
    environment.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import config.settings as s; print(s.DEBUG, s.DATABASES['default']['ENGINE'])",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS,
    )


def test_production_mode_refuses_the_default_secret_key():
    result = _import_settings(TANDEM_MODE="production")
    assert result.returncode != 0
    assert "refuses to start with the default" in result.stderr


def test_production_mode_starts_with_a_real_secret_key_and_debug_off():
    result = _import_settings(
        TANDEM_MODE="production",
        SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u@127.0.0.1:5432/db",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        ALLOWED_HOSTS="tandem.example.org",
    )
    assert result.returncode == 0, result.stderr
    # PostgreSQL through django-prometheus's wrapper of Django's backend (query metrics).
    assert result.stdout.split() == ["False", "django_prometheus.db.backends.postgresql"]


def test_production_mode_without_allowed_hosts_says_which_setting_is_missing():
    result = _import_settings(
        TANDEM_MODE="production",
        SECRET_KEY="x" * 50,
        DATABASE_URL="postgres://u@127.0.0.1:5432/db",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
    )
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
