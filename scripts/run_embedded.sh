#!/usr/bin/env bash
# Runs Tandem on its embedded default: SQLite under var/, a filesystem Celery broker, one real
# worker process per queue group (config.celery.WORKER_GROUPS; the periodic scheduler runs in
# the default group's worker), and the development web server. When everything is ready it
# prints the URL, the port and the first-run credentials together, in a box.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# When `make run` started (before its setup), else now.
STARTED=${MAKE_RUN_STARTED:-$($PY -c "import time; print(time.time())")}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
$PY scripts/port_free.py "$HOST" "$PORT"
VAR=${VAR_DIR:-var}
mkdir -p "$VAR/log"
# The settings take VAR_DIR as an absolute path only: a relative one is made so, from here.
VAR=$(cd "$VAR" && pwd)
export VAR_DIR="$VAR"
STATE="$VAR/run-state.json"

$PY scripts/embedded_prepare.py "$STATE"

PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# Stops the worker within about 10 s, a long job running or not: TERM (Celery's warm shutdown:
# it takes no new task and lets a short one finish), QUIT after 5 s (its cold shutdown: the job
# it runs is stopped and goes back to its queue, its attempt not counted, for the next start; a
# training run resumes from its last checkpoint), KILL after 5 s more (the job it ran is queued
# again at the next start, as a dead worker's is). Its own processes (its pool, the default
# worker's scheduler), which it stops itself unless it dies first, are killed once it is gone.
stop_worker() {
  local pid=$1 signal tick own=()
  for signal in TERM QUIT KILL; do
    own+=($(pgrep -P "$pid" || true))
    kill -"$signal" "$pid" 2>/dev/null || break
    for ((tick = 0; tick < 50; tick++)); do
      kill -0 "$pid" 2>/dev/null || break 2
      sleep 0.1
    done
  done
  [ ${#own[@]} -eq 0 ] || kill -KILL "${own[@]}" 2>/dev/null || true
}

# Runs a command again whenever it exits (a worker that dies is back 2 s later), appending its
# output to a log that it keeps across restarts and runs. A TERM stops the command (stop_worker)
# and the loop; so does an INT: Ctrl+C reaches every process of the terminal's group, and a loop
# that it ended left its worker behind, in a warm shutdown that waits for a training run to end.
supervise() {
  local log=$1 child="" status
  shift
  trap 'trap "" INT TERM; [ -n "$child" ] && stop_worker "$child"; wait 2>/dev/null; exit 0' \
    INT TERM
  echo "--- $(date -u +%FT%TZ) make run starts this worker" >> "$log"
  while :; do
    "$@" >> "$log" 2>&1 &
    child=$!
    status=0
    wait "$child" || status=$?
    echo "--- $(date -u +%FT%TZ) the worker exited with status $status; starting it again" >> "$log"
    echo "A worker exited (status $status) and is starting again; its log: $log" >&2
    sleep 2 &
    child=$!
    wait "$child" || true
  done
}

# One worker per group, each with one process and TORCH_THREADS compute threads. Bulk groups
# (generation, training) run at a lower CPU priority so that suggestions stay fast beside them.
while read -r GROUP QUEUES; do
  EXTRA=()
  NICE=()
  [ "$GROUP" = default ] && EXTRA=(-B --schedule "$VAR/celerybeat-schedule")
  case "$GROUP" in generation|training) NICE=(nice -n 10) ;; esac
  supervise "$VAR/log/worker-$GROUP.log" ${NICE[@]+"${NICE[@]}"} $PY -m celery -A config worker \
    -Q "$QUEUES" -n "$GROUP@%h" --concurrency 1 --without-mingle --without-gossip \
    ${EXTRA[@]+"${EXTRA[@]}"} --loglevel INFO &
  PIDS+=($!)
done < <($PY -c 'import json, sys
for group, queues in json.load(open(sys.argv[1]))["worker_groups"].items():
    print(group, ",".join(queues))' "$STATE")

$PY manage.py runserver --noreload "$HOST:$PORT" >> "$VAR/log/web.log" 2>&1 &
WEB_PID=$!
PIDS+=($WEB_PID)

$PY scripts/embedded_ready.py "http://$HOST:$PORT" "$PORT" "$STATE" "$STARTED" "$VAR" "$WEB_PID" || true
echo "Web server log: $VAR/log/web.log"
wait "$WEB_PID"
