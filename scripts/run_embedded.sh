#!/usr/bin/env bash
# Runs Tandem on its embedded default: SQLite under var/, a filesystem Celery broker, one real
# worker process (with the periodic scheduler embedded), and the development web server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
VAR=${VAR_DIR:-var}

$PY manage.py migrate --noinput
$PY manage.py bootstrap
$PY manage.py ensure_default_model

mkdir -p "$VAR/log"
$PY -m celery -A config worker -Q interactive,generation,training,default --concurrency 1 -B \
  --schedule "$VAR/celerybeat-schedule" --loglevel INFO --logfile "$VAR/log/worker.log" &
WORKER_PID=$!
trap 'kill $WORKER_PID 2>/dev/null; wait $WORKER_PID 2>/dev/null' EXIT INT TERM
echo "Worker started (pid $WORKER_PID, log: $VAR/log/worker.log)."
echo "Open http://$HOST:$PORT/ and log in with the credentials printed above (first run only)."
$PY manage.py runserver "$HOST:$PORT"
