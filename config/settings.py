"""Tandem settings: every value comes from the environment, with a safe default.

Two modes:
- ``embedded`` (default): one machine, nothing to install. SQLite under ``var/``, a Celery
  broker on the local filesystem consumed by a real worker process, the bundled tiny chat
  model, demo accounts created on first run.
- ``production``: PostgreSQL and Redis from ``DATABASE_URL`` / ``CELERY_BROKER_URL``, a real
  ``SECRET_KEY`` is required, ``DEBUG`` must be off, no accounts with known passwords.
"""

import ipaddress
import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_dir, env_float, env_int, env_json, env_list, env_str
from config.keys import secret_file_read_or_create
from config.threads import torch_threads_setting
from ranking.projects.limits import MAX_ALTERNATIVES, MAX_OVERLAP, MAX_POOL_SIZE

BASE_DIR = Path(__file__).resolve().parent.parent

TANDEM_MODE = env_str("TANDEM_MODE", "embedded")
if TANDEM_MODE not in {"embedded", "production"}:
    raise ImproperlyConfigured(
        f"TANDEM_MODE must be 'embedded' or 'production', got {TANDEM_MODE!r}"
    )
PRODUCTION = TANDEM_MODE == "production"

VAR_DIR = env_dir("VAR_DIR", str(BASE_DIR / "var"))

# The placeholders of .env.example hold this: long enough, but public.
PLACEHOLDER_KEY_MARK = "change-me"
# The embedded default makes a random key once under VAR_DIR (a public one would let anyone
# sign what the key signs, and work out which reply of a side-by-side is which); production
# needs it set.
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY and not PRODUCTION:
    SECRET_KEY = secret_file_read_or_create(VAR_DIR / "secret.key")
if PRODUCTION and (PLACEHOLDER_KEY_MARK in SECRET_KEY.lower() or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "TANDEM_MODE=production refuses to start without a SECRET_KEY, with a placeholder (from "
        ".env.example) or with a short one: set SECRET_KEY to a random string of at least 32 "
        "characters."
    )

if PRODUCTION:
    _missing = [name for name in ("DATABASE_URL", "CELERY_BROKER_URL") if not os.environ.get(name)]
    if _missing:
        raise ImproperlyConfigured(
            f"TANDEM_MODE=production needs {' and '.join(_missing)} (PostgreSQL and Redis URLs)."
        )

DEBUG = env_bool("DEBUG", not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "TANDEM_MODE=production refuses to start with DEBUG on: its error pages show settings, "
        "SQL and stack traces to anyone. Unset DEBUG (or set DEBUG=false); to debug, run the "
        "embedded default."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "TANDEM_MODE=production needs ALLOWED_HOSTS: the host names the site is served under, "
        "comma-separated (e.g. localhost,127.0.0.1 to try it on this machine)."
    )
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "django_prometheus",
    "accounts",
    "labeling",
    "ranking",
    "sampler",
]

MIDDLEWARE = [
    # First and last: request counts and latencies for /metrics (django-prometheus).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "config.log.RequestIdMiddleware",
    # (the Content-Security-Policy middleware goes here, below)
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Probes and scrapes are answered before host checks and HTTPS redirects (config/health.py).
    "config.health.OperationsEndpointsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Under /api/: oversized bodies refused up front, every error answered as JSON; below the
    # header middleware above, so its answers carry their headers too.
    "config.api.ApiErrorMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's CommonMiddleware, without the add-a-slash redirect under /api/.
    "config.middleware.CommonExceptApiSlashMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Text that is not UTF-8 in a query or a form: a 400 in words, not stored as U+FFFD.
    "config.middleware.TextEncodingMiddleware",
    "config.middleware.LoginRequiredExceptApiMiddleware",
    # A page address visited with a method it does not take: a page saying so, not an empty 405.
    "config.middleware.PageMethodNotAllowedMiddleware",
    # An admin list filtered by a number the database cannot hold: a 400 page, not a 500.
    "config.middleware.AdminNumberTooLargeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
                "sampler.moderation.context_processors.content_filter",
            ],
            "builtins": ["template_partials.templatetags.partials", "config.template_filters"],
        },
    },
]

_sqlite_default = f"sqlite:///{VAR_DIR / 'tandem.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _sqlite_default))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # The web process and the worker write to the same file: wait for locks instead of failing,
    # take the write lock up front (no upgrade deadlocks), and let readers run beside a writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The same backends, counting queries, errors and latencies for /metrics (django-prometheus).
_METERED_ENGINES = {
    "django.db.backends.postgresql": "django_prometheus.db.backends.postgresql",
    "django.db.backends.sqlite3": "django_prometheus.db.backends.sqlite3",
}
DATABASES["default"]["ENGINE"] = _METERED_ENGINES.get(
    DATABASES["default"]["ENGINE"], DATABASES["default"]["ENGINE"]
)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Dates and times on pages: one style (config/formats/en/formats.py).
FORMAT_MODULE_PATH = "config.formats"

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
NODE_MODULES = BASE_DIR / "node_modules"
# Front-end libraries come from npm (package.json + lockfile) and are served as static files
# straight out of node_modules, so nothing is copied by hand and nothing loads from a CDN.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/htmx", NODE_MODULES / "htmx.org" / "dist"),
    ("vendor/lucide", NODE_MODULES / "lucide-static" / "icons"),
    ("vendor/chartjs", NODE_MODULES / "chart.js" / "dist"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
MEDIA_ROOT = VAR_DIR / "media"

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
# No request takes a file unless its view says so, with its own size limit (config.uploads):
# otherwise any POST's file parts (the CSRF check reads every POST) would be written to disk.
# A multipart body's text fields that are not UTF-8 are refused, not stored as U+FFFD.
FILE_UPLOAD_HANDLERS = [
    "config.uploads.FormTextUtf8Only",
    "config.uploads.FilesRefused",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# A failed CSRF check under /api/ is answered as JSON like every other API error.
CSRF_FAILURE_VIEW = "config.api.csrf_failure"

# HTTPS. A real deployment is served over HTTPS (TLS ended here or at a proxy that sets
# X-Forwarded-Proto): Secure cookies, a redirect from http://, HSTS. HTTPS=false is for trying
# production mode over plain http://localhost (docker compose on a laptop), where Secure cookies
# would never come back and every login would fail its CSRF check.
HTTPS = env_bool("HTTPS", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", HTTPS)
if HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is a promise about the whole domain that its owner makes, so it is opt-in.
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if env_bool("SECURE_HSTS_PRELOAD", False) else ["security.W021"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "config.api_schema.ErrorDocumentingAutoSchema",
    # JSON in and out only (config/api.py): bounded size and depth; errors never an HTML page.
    "DEFAULT_PARSER_CLASSES": ["config.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["config.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "config.api.StrictLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    # Errors about the whole request are {"detail": "..."}, as every other error is.
    "NON_FIELD_ERRORS_KEY": "detail",
    # `?format=` names an export format (rankings, pairs, ...), not a renderer.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tandem API",
    "DESCRIPTION": "Demonstrations, generations, rankings and exports for RLHF.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Several models have a `status`: each choice set gets its own schema name.
    "ENUM_NAME_OVERRIDES": {
        "ConversationStatusEnum": "labeling.conversations.models.Conversation.Status",
        "ProjectStatusEnum": "ranking.projects.models.Project.Status",
        "JobStatusEnum": "sampler.jobs.models.JobStatus",
    },
    # Row ids in paths (config.converters): a whole number from 1 that fits a bigint.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}},
}

# Celery. Embedded default: a broker on the local filesystem (no server), consumed by a real
# worker process that `make run` starts. Production: Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_BROKER_DIR = VAR_DIR / "celery-broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # kombu's filesystem transport, with messages written whole before workers see them.
    CELERY_BROKER_TRANSPORT = "config.broker_files:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR),
        "data_folder_out": str(CELERY_BROKER_DIR),
        "control_folder": str(VAR_DIR / "celery-control"),
        "store_processed": False,
    }
    # The embedded broker is a pair of folders; both the web process and the worker need them.
    for _folder in ("data_folder_in", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[_folder]).mkdir(parents=True, exist_ok=True)
else:
    # Redelivery of unacknowledged (acks_late) tasks after this many seconds; longer than any task.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
        # A broker that is down must fail a publication in seconds, not hang a web request.
        "socket_connect_timeout": 3,
        "socket_timeout": 10,
    }
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 1, least=1)
# Seconds a web request waits for the broker before reporting it unreachable.
CELERY_BROKER_CONNECTION_TIMEOUT = env_int("CELERY_BROKER_CONNECTION_TIMEOUT", 3)

# Models and generation.
MODEL_ROOT = env_dir("MODEL_ROOT", str(VAR_DIR / "models"))
# The largest data file the Training page takes as an upload, checked while it streams in;
# larger ones are better copied to the server and trained with `manage.py train_*`.
TRAINING_UPLOAD_MAX_BYTES = env_int("TRAINING_UPLOAD_MAX_BYTES", 512 * 1024 * 1024, least=1)
EMBEDDED_MODEL_DIR = BASE_DIR / "assets" / "models" / "tandem-chitchat-tiny"
SAMPLER_MODEL = env_str("SAMPLER_MODEL", str(EMBEDDED_MODEL_DIR))
SAMPLER_DEVICE = env_str("SAMPLER_DEVICE", "auto")
GENERATION_MAX_N = env_int("GENERATION_MAX_N", 16)
GENERATION_MAX_NEW_TOKENS = env_int("GENERATION_MAX_NEW_TOKENS", 256, least=1)
# Environment variables an `openai` version's api_key_env may name besides those named as a
# model server's key (ending in _API_KEY or _API_TOKEN, HF_TOKEN): the worker sends the value
# to the version's server.
MODEL_API_KEY_ENVS = env_list("MODEL_API_KEY_ENVS", [])
# Generation jobs one trainer (not an admin) may have waiting or running at once (0: no limit):
# suggestions, the playground and the API; one person cannot fill the queues.
GENERATION_MAX_UNFINISHED_PER_USER = env_int("GENERATION_MAX_UNFINISHED_PER_USER", 20, least=0)
# Seconds a generation task may run before it is killed and its job marked failed (0: no limit;
# a negative one would stop every job at once).
GENERATION_TIME_LIMIT = env_int("GENERATION_TIME_LIMIT", 300, least=0)
# Jobs for the same model version waiting in the same queue that a worker samples in one backend
# call (1: one job at a time).
GENERATION_BATCH_JOBS = env_int("GENERATION_BATCH_JOBS", 8, least=1)
# Seconds a job of each other kind may run before it is stopped and failed (a retry resumes a
# training run from its checkpoint, an attack run from its last result). 0, the default: as long
# as it takes, since how long grows with the work asked for (a training run takes hours, an
# export or a comparison grows with its data); set one to stop a runaway job of that kind.
TRAINING_TIME_LIMIT = env_int("TRAINING_TIME_LIMIT", 0, least=0)
COMPARISON_TIME_LIMIT = env_int("COMPARISON_TIME_LIMIT", 0, least=0)
ATTACK_RUN_TIME_LIMIT = env_int("ATTACK_RUN_TIME_LIMIT", 0, least=0)
EXPORT_TIME_LIMIT = env_int("EXPORT_TIME_LIMIT", 0, least=0)

# Background jobs (sampler.jobs): every kind shares one lifecycle.
# A running job's worker refreshes its heartbeat this often...
JOB_HEARTBEAT_SECONDS = env_int("JOB_HEARTBEAT_SECONDS", 10)
# ...and a running job whose heartbeat is older than this lost its worker: it is queued again.
JOB_STALE_AFTER = env_int("JOB_STALE_AFTER", 60)
# A queued job not started this long after its last publication is published again (the
# broker may have lost it); the delay doubles with each publication, up to JOB_REPUBLISH_MAX.
JOB_REPUBLISH_AFTER = env_int("JOB_REPUBLISH_AFTER", 120)
JOB_REPUBLISH_MAX = env_int("JOB_REPUBLISH_MAX", 1800)
# A job whose publication has not been confirmed this long after it was queued is published again.
JOB_PUBLISH_GRACE = env_int("JOB_PUBLISH_GRACE", 10, least=0)
# Times a worker may start a job (a worker that dies mid-job counts) before it is failed.
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
# How often the outbox and the sweeper run (seconds; the beat schedule).
JOB_TICK_SECONDS = env_int("JOB_TICK_SECONDS", 15, least=1)
# Rows the outbox and the sweeper handle per table and tick.
JOB_TICK_BATCH = env_int("JOB_TICK_BATCH", 500, least=1)
_job_setting_errors = []
if JOB_HEARTBEAT_SECONDS < 1 or JOB_STALE_AFTER < 3 * JOB_HEARTBEAT_SECONDS:
    _job_setting_errors.append(
        "JOB_STALE_AFTER must be at least 3 x JOB_HEARTBEAT_SECONDS (>= 1), or busy workers "
        "would be taken for dead"
    )
if JOB_REPUBLISH_AFTER < JOB_PUBLISH_GRACE or JOB_REPUBLISH_MAX < JOB_REPUBLISH_AFTER:
    _job_setting_errors.append(
        "JOB_PUBLISH_GRACE <= JOB_REPUBLISH_AFTER <= JOB_REPUBLISH_MAX must hold"
    )
_visibility = CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
if _visibility is not None and _visibility <= JOB_STALE_AFTER:
    _job_setting_errors.append(
        f"JOB_STALE_AFTER ({JOB_STALE_AFTER} s) must be below CELERY_VISIBILITY_TIMEOUT "
        f"({_visibility} s): a dead worker's job is queued again by Tandem, not by the broker"
    )
if JOB_MAX_ATTEMPTS < 1:
    _job_setting_errors.append("JOB_MAX_ATTEMPTS must be at least 1")
# The generation job table stores n from 1 to 64 (a database constraint).
if not 1 <= GENERATION_MAX_N <= 64:
    _job_setting_errors.append(
        f"GENERATION_MAX_N must be between 1 and 64 (replies per generation job), got "
        f"{GENERATION_MAX_N}"
    )
if _job_setting_errors:
    raise ImproperlyConfigured("; ".join(_job_setting_errors) + ".")

# Ranking: K sampled alternatives per task (plus the source message), N rankings per task;
# the defaults of every project that sets none, bounded as a project's own values are.
RANKING_ALTERNATIVES = env_int("RANKING_ALTERNATIVES", 4, least=1, most=MAX_ALTERNATIVES)
RANKING_OVERLAP = env_int("RANKING_OVERLAP", 3, least=1, most=MAX_OVERLAP)
RANKING_LEASE_SECONDS = env_int("RANKING_LEASE_SECONDS", 15 * 60, least=60)
# Tasks kept ready (or being prepared) so a trainer never waits for sampling.
RANKING_POOL_SIZE = env_int("RANKING_POOL_SIZE", 20, least=0, most=MAX_POOL_SIZE)
# The pool grows with demand: this many open tasks per trainer who took a task in the window.
RANKING_TASKS_PER_ACTIVE_TRAINER = env_int("RANKING_TASKS_PER_ACTIVE_TRAINER", 3, least=0)
RANKING_DEMAND_WINDOW_SECONDS = env_int("RANKING_DEMAND_WINDOW_SECONDS", 900, least=1)
# Which assistant messages count as model-written sources for ranking tasks.
RANKING_SOURCE_ORIGINS = env_list("RANKING_SOURCE_ORIGINS", ["model", "model_edited"])
# Token limit of alternatives whose original recorded none (ranking.rank.services: else the
# original's, so that where a reply stops does not single it out).
RANKING_MAX_NEW_TOKENS = env_int("RANKING_MAX_NEW_TOKENS", 96, least=1)
# The quality page counts a ranking submitted within this many seconds of the task being shown
# as "very fast", and flags a trainer whose share of very fast or unchanged-order rankings
# reaches RANKING_OUTLIER_PERCENT % (over at least RANKING_OUTLIER_MIN_RANKINGS rankings).
RANKING_FAST_SUBMIT_SECONDS = env_int("RANKING_FAST_SUBMIT_SECONDS", 8, least=0)
RANKING_OUTLIER_PERCENT = env_int("RANKING_OUTLIER_PERCENT", 30, least=1, most=100)
RANKING_OUTLIER_MIN_RANKINGS = env_int("RANKING_OUTLIER_MIN_RANKINGS", 5, least=1)
# How often (seconds) trainers' trust is estimated again where new rankings arrived; the quality
# and project pages show the stored estimate, exports bring it up to date first.
TRUST_REFRESH_SECONDS = env_int("TRUST_REFRESH_SECONDS", 300, least=1)
# How long after submitting a trainer may take a ranking back (the toast's "Undo").
RANKING_UNDO_SECONDS = env_int("RANKING_UNDO_SECONDS", 10, least=0)
# How long what an undo deleted (its ranking, the leases it gave back) is remembered for its
# trainer, so that a stale tab's request on it is told it is gone (409) rather than unknown
# (404); a periodic task deletes older memos. At least a lease's length: a tab showing a lease
# given back is current for as long as the lease would have lasted.
UNDO_REMOVAL_TTL_SECONDS = env_int(
    "UNDO_REMOVAL_TTL_SECONDS",
    max(7 * 24 * 60 * 60, RANKING_LEASE_SECONDS),
    least=RANKING_LEASE_SECONDS,
)

# Content filter, applied to every generated sample before a trainer sees it
# (sampler/moderation.py). "builtin": word and regex lists, nothing to download; "classifier":
# any Hugging Face text-classification model directory in CONTENT_FILTER_MODEL; "none"; or the
# dotted path of a class with the ContentFilter interface.
CONTENT_FILTER = env_str("CONTENT_FILTER", "builtin")
# Words and phrases (case-insensitive, whole words) and regexes, by category; JSON in the
# environment: {"category": ["word", ...]} or a plain list (one category, "blocklist"). A regex
# must match at least one character: one that matches an empty string ("a*") is refused.
CONTENT_FILTER_WORDS = env_json(
    "CONTENT_FILTER_WORDS",
    {
        "profanity": ["fuck", "fucking", "motherfucker", "shit", "bitch", "asshole", "cunt"],
        "violence": ["kill yourself", "i will kill you", "i will hurt you"],
        "self_harm": ["suicide", "self-harm", "cut myself"],
        "weapons": ["pipe bomb", "build a bomb", "make a bomb"],
    },
)
CONTENT_FILTER_PATTERNS = env_json(
    "CONTENT_FILTER_PATTERNS",
    # A model repeating an e-mail address or a US social security number from its training data.
    {"personal_data": [r"[\w.+-]+@[\w-]+\.[\w.-]+", r"\b\d{3}-\d{2}-\d{4}\b"]},
)
CONTENT_FILTER_MODEL = env_str("CONTENT_FILTER_MODEL", "")
# A classifier label flags a sample when its probability reaches the threshold; labels that
# mean "fine" never flag. CONTENT_FILTER_FLAG_LABELS, when set, names the only labels that flag.
CONTENT_FILTER_THRESHOLD = env_float("CONTENT_FILTER_THRESHOLD", 0.5, least=0, most=1)
CONTENT_FILTER_SAFE_LABELS = env_list(
    "CONTENT_FILTER_SAFE_LABELS",
    ["safe", "ok", "neutral", "normal", "clean", "non-toxic", "non_toxic", "not_toxic"],
)
CONTENT_FILTER_FLAG_LABELS = env_list("CONTENT_FILTER_FLAG_LABELS", [])
# Flagged samples are never turned into ranking candidates (off: they are ranked, with a warning).
CONTENT_FILTER_BLOCK_RANKING = env_bool("CONTENT_FILTER_BLOCK_RANKING", False)

EXPORT_ROOT = env_dir("EXPORT_ROOT", str(VAR_DIR / "exports"))

# Logs: "plain" lines, or "json" (one object per line, with the request id, for a collector).
LOG_FORMAT = env_str("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'plain' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "config.log.RequestIdFilter"},
        "client_error": {"()": "config.log.ClientErrorFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "config.log.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["client_error"]},
    },
}
# Celery workers keep this configuration (JSON lines too) instead of installing their own.
CELERY_WORKER_HIJACK_ROOT_LOGGER = LOG_FORMAT == "plain"

# Operations: threads, worker heartbeats, health, metrics and error reporting.
# torch intra-op threads (and OpenMP/MKL/OpenBLAS threads) per worker process and training
# command. 1 keeps several workers on one machine from fighting over every core; raise it on a
# machine that runs one worker (config/threads.py applies it).
TORCH_THREADS = torch_threads_setting()
# Each Celery worker writes its heartbeat row this often (sampler.workers)...
WORKER_HEARTBEAT_SECONDS = env_int("WORKER_HEARTBEAT_SECONDS", 15)
# ...and counts as live while its last heartbeat is younger than this (/readyz, /metrics).
WORKER_LIVE_SECONDS = env_int("WORKER_LIVE_SECONDS", 60)
if WORKER_HEARTBEAT_SECONDS < 1 or WORKER_LIVE_SECONDS < 2 * WORKER_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "WORKER_LIVE_SECONDS must be at least 2 x WORKER_HEARTBEAT_SECONDS (>= 1), or a worker "
        "between two heartbeats would be reported dead."
    )
# Queues /readyz needs a live worker for (comma-separated; empty: every queue).
READY_QUEUES = env_list("READY_QUEUES", [])
# A file the worker touches with every heartbeat, for a container healthcheck (empty: none).
WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE", "")
# /metrics answers a request with "Authorization: Bearer <METRICS_TOKEN>" or from an address in
# METRICS_ALLOWED_CIDRS (comma-separated networks); anything else gets 403.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_CIDRS = env_list(
    "METRICS_ALLOWED_CIDRS", [] if PRODUCTION else ["127.0.0.0/8", "::1/128"]
)
# Read at every scrape: one that is not a network would answer each with a 500.
for _network in METRICS_ALLOWED_CIDRS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _error:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_CIDRS must be networks (127.0.0.0/8, 10.0.0.5, ::1/128), "
            f"comma-separated: {_error}."
        ) from _error
# Seconds /readyz and /metrics wait for the broker before calling it down.
BROKER_PROBE_TIMEOUT = env_float("BROKER_PROBE_TIMEOUT", 2.0, above=0)
# Error reporting to Sentry (or a compatible service) when a DSN is set; needs sentry-sdk
# (pip install 'tandem[sentry]').
SENTRY_DSN = env_str("SENTRY_DSN", "")
SENTRY_ENVIRONMENT = env_str("SENTRY_ENVIRONMENT", TANDEM_MODE)
SENTRY_TRACES_SAMPLE_RATE = env_float("SENTRY_TRACES_SAMPLE_RATE", 0.0, least=0, most=1)
if SENTRY_DSN:
    from config.sentry import sentry_init

    sentry_init(
        dsn=SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
    )

# ---------------------------------------------------------------------------------------------
# Security: API authentication, login lockout, request throttling, Content-Security-Policy,
# the database connection pool and the export pseudonym key (README: "Security").
# ---------------------------------------------------------------------------------------------
INSTALLED_APPS += ["axes", "csp"]
# Content-Security-Policy on every response; django-axes last before the metrics middleware, as
# its documentation asks (it turns a locked-out login into the lockout response).
MIDDLEWARE.insert(MIDDLEWARE.index("config.log.RequestIdMiddleware") + 1,
                  "csp.middleware.CSPMiddleware")  # fmt: skip
MIDDLEWARE.insert(MIDDLEWARE.index("django_prometheus.middleware.PrometheusAfterMiddleware"),
                  "axes.middleware.AxesMiddleware")  # fmt: skip
# A browser that logs a user in is marked known to that user (accounts/lockout.py).
MIDDLEWARE.insert(MIDDLEWARE.index("axes.middleware.AxesMiddleware"),
                  "accounts.lockout.KnownBrowserMiddleware")  # fmt: skip

# API clients: a per-user token (accounts.authentication) sent as "Authorization: Bearer <token>"
# (or "Token <token>"); the browser: its session. HTTP Basic (a password hash on every request)
# only when API_BASIC_AUTH is on, for old scripts.
API_BASIC_AUTH = env_bool("API_BASIC_AUTH", False)
REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"] = [
    "accounts.authentication.ApiTokenAuthentication",
    "rest_framework.authentication.SessionAuthentication",
    *(["accounts.authentication.BasicAuthenticationWithLockout"] if API_BASIC_AUTH else []),
]
# API requests per signed-in user (the browser's pages, autosave and polling included, are not
# API requests). A script that claims, reads and submits with 0.5 s think time makes at most
# about 120 a minute (bench/bench_load.py), a tenth of the default.
API_THROTTLE_USER = env_str("API_THROTTLE_USER", "1200/minute")
API_THROTTLE_ANON = env_str("API_THROTTLE_ANON", "60/minute")
# DRF reads a rate only when a request comes (one that it cannot read is a 500 on every API
# request), and 0 would refuse every request: both are refused here, at the start.
_throttle_rates = {"API_THROTTLE_USER": API_THROTTLE_USER, "API_THROTTLE_ANON": API_THROTTLE_ANON}
for _name, _rate in _throttle_rates.items():
    # DRF reads the period's first letter: "hours" is an hour, as "hour" and "h" are.
    if not re.fullmatch(r"0*[1-9]\d*/(s|sec|second|m|min|minute|h|hour|d|day)s?", _rate):
        raise ImproperlyConfigured(
            f"{_name} must be a number of requests per second, minute, hour or day, at least 1 "
            f"(e.g. 1200/minute), got {_rate!r}."
        )
# DRF's anonymous and per-user rates, letting requests through while the cache is down.
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    "accounts.throttling.AnonRateThrottleUnlessCacheDown",
    "accounts.throttling.UserRateThrottleUnlessCacheDown",
]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {"anon": API_THROTTLE_ANON, "user": API_THROTTLE_USER}
# How long the answer to a creating POST sent with an Idempotency-Key is kept for its retries
# (config/idempotency.py); a periodic task deletes older keys. Clients retry within minutes;
# a day covers a client that retries after an outage overnight.
IDEMPOTENCY_KEY_TTL_SECONDS = env_int("IDEMPOTENCY_KEY_TTL_SECONDS", 24 * 60 * 60, least=60)
# DRF checks permissions before throttles, so a request without valid credentials is answered
# 401 before AnonRateThrottle sees it: this middleware counts those 401s per address and turns
# further ones into 429 past API_THROTTLE_ANON (guessing tokens or passwords included).
MIDDLEWARE.insert(MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
                  "accounts.throttling.AnonymousApiThrottleMiddleware")  # fmt: skip
# Throttle counters live in the cache: shared by every web process only when the cache is
# (Redis). CACHE_URL: redis://... ; default: the broker's Redis in production, else in-process.
CACHE_URL = env_str(
    "CACHE_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "locmem://"
)
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "tandem",
            # A cache that is down must not take the site with it: throttling waits seconds at
            # most, then lets the request through (accounts/throttling.py).
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(
        f"CACHE_URL must be redis://..., rediss://... or locmem://, got {CACHE_URL!r}"
    )

# Wrong passwords (login page, admin, HTTP Basic when on), accounts/lockout.py: after
# LOGIN_FAILURE_LIMIT failures for one username from one address, that pair is locked out
# (django-axes; a login on a login page resets the pair's count, HTTP Basic's do not); after
# LOGIN_ACCOUNT_FAILURE_LIMIT from all addresses together, the username is locked out from every
# address but the browsers that have logged in as that user within LOGIN_KNOWN_BROWSER_DAYS, with
# the password the user still has. Either lasts LOGIN_LOCKOUT_MINUTES from the last failure counted;
# attempts refused meanwhile are not counted. An attempt is counted before its password is checked,
# under a lock on its username, so attempts at once get no more passwords checked than the limits.
# Behind a proxy, AXES_IPWARE_PROXY_COUNT says how many proxies set X-Forwarded-For.
AUTHENTICATION_BACKENDS = [
    "accounts.lockout.LockoutBackend",
    # Checks no password (LockoutBackend ends every password check): it reads the sessions
    # that it logged in before LockoutBackend did.
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.lockout.LockoutHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 10, least=1)
LOGIN_ACCOUNT_FAILURE_LIMIT = env_int("LOGIN_ACCOUNT_FAILURE_LIMIT", 3 * AXES_FAILURE_LIMIT)
if LOGIN_ACCOUNT_FAILURE_LIMIT <= AXES_FAILURE_LIMIT:
    # Not above it, the per-address limit would never be reached: one address could lock the
    # account out from every other.
    raise ImproperlyConfigured(
        f"LOGIN_ACCOUNT_FAILURE_LIMIT ({LOGIN_ACCOUNT_FAILURE_LIMIT}) must be above "
        f"LOGIN_FAILURE_LIMIT ({AXES_FAILURE_LIMIT}): failures from all addresses together "
        "against those from one."
    )
LOGIN_KNOWN_BROWSER_DAYS = env_int("LOGIN_KNOWN_BROWSER_DAYS", 90, least=1)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15, least=1) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# X-Forwarded-For is believed only when proxies are declared (else any client could forge it).
AXES_IPWARE_PROXY_COUNT = env_int("AXES_IPWARE_PROXY_COUNT", 0) or None
# The same for the API's throttles (DRF believes X-Forwarded-For when NUM_PROXIES is unset).
REST_FRAMEWORK["NUM_PROXIES"] = AXES_IPWARE_PROXY_COUNT or 0
AXES_IPWARE_PROXY_ORDER = "right-most"
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)
AXES_VERBOSE = False
# Failed attempts are stored (the lockout needs them); successful logins are not (no table that
# grows with every login: last_login says when a user last came).
AXES_DISABLE_ACCESS_LOG = True
# Failures and lockouts are warnings; every successful login is not worth a log line.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}

# Django's password validators apply wherever a password is set (accounts.services, the
# management commands, the admin): AUTH_PASSWORD_VALIDATORS above, and no all-digit passwords.
AUTH_PASSWORD_VALIDATORS.append(
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"}
)

# Headers. Content-Security-Policy: scripts, styles, images and requests from this site only,
# nothing inline (no <script> blocks, no on...= handlers, no style="..."), no eval (htmx's
# allowEval is off in templates/base.html). Next to Referrer-Policy, nosniff and frame options.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Cookies: HttpOnly session cookie (Django's default), SameSite=Lax; Secure with HTTPS (above).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Database connections. PostgreSQL: Django's psycopg pool in each web process, so a gunicorn
# worker's threads share at most DATABASE_POOL_MAX_SIZE connections (CONN_MAX_AGE must be 0 with
# a pool). Sizing: web processes x DATABASE_POOL_MAX_SIZE (= gunicorn threads) + Celery worker
# processes (one connection each; config/celery.py takes the pool out of workers, which fork)
# + a few for management commands must stay below PostgreSQL's max_connections.
DATABASE_POOL = env_bool("DATABASE_POOL", True)
DATABASE_POOL_MIN_SIZE = env_int("DATABASE_POOL_MIN_SIZE", 1)
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 4)
# Seconds a request waits for a free connection before it fails (instead of hanging).
DATABASE_POOL_TIMEOUT = env_int("DATABASE_POOL_TIMEOUT", 10)
if DATABASES["default"]["ENGINE"].endswith("postgresql") and DATABASE_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DATABASE_POOL_MIN_SIZE,
        "max_size": DATABASE_POOL_MAX_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
    }
# Celery workers (forked processes, one task at a time) keep one plain connection each.
DATABASE_WORKER_CONN_MAX_AGE = env_int("DATABASE_WORKER_CONN_MAX_AGE", 60)

# Export pseudonyms (ranking.exports): keyed by their own secret, never by SECRET_KEY. The
# embedded default makes a random key once under VAR_DIR; production needs it set. A deployment
# whose exports were keyed by SECRET_KEY keeps its pseudonyms by setting
# EXPORT_PSEUDONYM_KEY to that SECRET_KEY's value.
EXPORT_PSEUDONYM_KEY = env_str("EXPORT_PSEUDONYM_KEY", "")
if not EXPORT_PSEUDONYM_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "TANDEM_MODE=production needs EXPORT_PSEUDONYM_KEY (at least 32 random characters; "
            "to keep the pseudonyms of exports made before it existed, set it to the value of "
            "SECRET_KEY they were made with)."
        )
    EXPORT_PSEUDONYM_KEY = secret_file_read_or_create(VAR_DIR / "export-pseudonym.key")
elif len(EXPORT_PSEUDONYM_KEY) < 32 or PLACEHOLDER_KEY_MARK in EXPORT_PSEUDONYM_KEY.lower():
    raise ImproperlyConfigured(
        "EXPORT_PSEUDONYM_KEY must be at least 32 random characters (not the placeholder from "
        ".env.example)."
    )
