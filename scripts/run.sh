#!/usr/bin/env bash
# The run command: a working Charter with demo data, a real Celery worker and gunicorn.
#
#   scripts/run.sh                     http://127.0.0.1:8000/
#   HOST=0.0.0.0 PORT=9000 scripts/run.sh
#   CHARTER_VENV=/path/to/venv scripts/run.sh   a virtualenv other than .venv (made if missing)
#
# Zero setup: SQLite and a filesystem Celery broker under var/ (or $CHARTER_VAR_DIR) unless
# DATABASE_URL / CELERY_BROKER_URL say otherwise. Ctrl-C or SIGTERM stops the web server and
# the worker. Safe to run again: migrations, static files and demo data are idempotent, and a
# worker left behind by an earlier run that was killed outright is stopped first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
DEMO_PASSWORD="${DEMO_PASSWORD:-charter-demo}"
export DEMO_PASSWORD
VAR_DIR="${CHARTER_VAR_DIR:-$ROOT/var}"
VENV="${CHARTER_VENV:-.venv}"
PY="$VENV/bin/python"

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

port_in_use() {
  "$PY" - "$1" "$2" <<'PY'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
probe = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
with socket.socket(socket.AF_INET6 if ":" in probe else socket.AF_INET) as s:
    s.settimeout(0.5)
    sys.exit(0 if s.connect_ex((probe, port)) == 0 else 1)
PY
}

WORKER_PID=""
WEB_PID=""
MLSERVER_PIDS=()
SERVING_DIR="${CHARTER_SERVING_DIR:-$VAR_DIR/serving}"
declare -A MLSERVER_PORT=(
  [staging]="${CHARTER_MLSERVER_STAGING_PORT:-8181}"
  [production]="${CHARTER_MLSERVER_PRODUCTION_PORT:-8182}"
)
WORKER_PIDFILE="$VAR_DIR/run/worker.pid"

stop_pid() {
  local pid=$1 seconds=$2
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  # A second Ctrl-C or SIGTERM (a process manager, `timeout`) must not cut the cleanup short and
  # leave the worker behind: it is bounded (web 15 s, worker 30 s, then SIGKILL).
  trap - EXIT
  trap '' INT TERM
  if [[ -n $WEB_PID ]]; then
    log "Stopping the web server"
    stop_pid "$WEB_PID" 15
  fi
  if [[ -n $WORKER_PID ]]; then
    log "Stopping the Celery worker (it finishes the task in hand first)"
    stop_pid "$WORKER_PID" 30
    rm -f "$WORKER_PIDFILE"
  fi
  if ((${#MLSERVER_PIDS[@]})); then
    log "Stopping the MLServers"
    for pid in "${MLSERVER_PIDS[@]}"; do stop_pid "$pid" 15; done
  fi
  exit "$rc"
}

stop_stale_worker() {
  [[ -f $WORKER_PIDFILE ]] || return 0
  local pid
  pid="$(cat "$WORKER_PIDFILE" 2>/dev/null || true)"
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qa celery "/proc/$pid/cmdline" 2>/dev/null; then
    log "Stopping the worker an earlier run left behind (pid $pid)"
    stop_pid "$pid" 30
  fi
  rm -f "$WORKER_PIDFILE"
}

# The web app and every module the worker loads import cleanly (about a second).
imports_ok() {
  "$PY" - >"$VAR_DIR/log/import-check.log" 2>&1 <<'PY'
import django
from governance.celery import app
django.setup()
app.loader.import_default_modules()
import gunicorn.app.wsgiapp
import governance.wsgi
PY
}

# One MLServer per default environment (staging, production), supervised in the foreground by
# workers/serving/mlserver_process.py (it restarts a server that dies and loads again what was live).
start_mlservers() {
  local env port
  for env in staging production; do
    port=${MLSERVER_PORT[$env]}
    for p in "$port" $((port + 100)) $((port + 200)); do
      port_in_use 127.0.0.1 "$p" &&
        die "Port $p (the $env MLServer) is in use; stop what holds it or set CHARTER_MLSERVER_${env^^}_PORT=..."
    done
    "$PY" -m workers.serving.mlserver_process --name "$env" --dir "$SERVING_DIR/$env" --http-port "$port" \
      --grpc-port $((port + 100)) --metrics-port $((port + 200)) >>"$VAR_DIR/log/mlserver-$env.log" 2>&1 &
    MLSERVER_PIDS+=($!)
  done
  for env in staging production; do
    port=${MLSERVER_PORT[$env]}
    for _ in $(seq 900); do
      "$PY" - "$port" <<'PY' 2>/dev/null && continue 2
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/health/ready", timeout=1)
PY
      sleep 0.1
    done
    tail -n 40 "$VAR_DIR/log/mlserver-$env.log" >&2 || true
    die "The $env MLServer did not start; see $VAR_DIR/log/mlserver-$env.log."
  done
}

# --- main ------------------------------------------------------------------------------------

# base.lock is a subset of dev.lock: an environment synced for the tests already has it all.
venv_sync requirements/base.lock requirements/dev.lock
mkdir -p "$VAR_DIR/log" "$VAR_DIR/run"

# The stamp says the venv was synced; this says it still works (a package removed or broken by
# hand since, a stamp an older version of these scripts wrote too early). Re-sync once, then stop.
if ! imports_ok; then
  tail -n 3 "$VAR_DIR/log/import-check.log" >&2 || true
  log "Charter does not import in $VENV; re-syncing it with requirements/base.lock"
  VENV_FORCE_SYNC=1 venv_sync requirements/base.lock
  if ! imports_ok; then
    tail -n 40 "$VAR_DIR/log/import-check.log" >&2 || true
    die "Charter does not import in $VENV even after re-syncing it; see above (or remove $VENV and run again)."
  fi
fi

if port_in_use "$HOST" "$PORT"; then
  die "Something is already listening on $HOST:$PORT (another scripts/run.sh?). Stop it or set PORT=..."
fi

log "Applying migrations"
"$PY" manage.py migrate --noinput
log "Collecting static files"
"$PY" manage.py collectstatic --noinput -v 0
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "Starting MLServer for staging (:${MLSERVER_PORT[staging]}) and production (:${MLSERVER_PORT[production]})"
start_mlservers
log "Loading demo data (the demo's approved versions are deployed on those MLServers)"
"$PY" manage.py seed_demo

stop_stale_worker
log "Starting the Celery worker (log: $VAR_DIR/log/worker.log)"
"$VENV/bin/celery" -A governance worker -Q default,evaluations,deploy --concurrency 1 --loglevel info \
  --pidfile "$WORKER_PIDFILE" >>"$VAR_DIR/log/worker.log" 2>&1 &
WORKER_PID=$!
sleep 2
if ! kill -0 "$WORKER_PID" 2>/dev/null; then
  tail -n 40 "$VAR_DIR/log/worker.log" >&2 || true
  WORKER_PID=""
  die "The Celery worker exited at start; see $VAR_DIR/log/worker.log."
fi

shown_host="$HOST"
[[ $HOST == 0.0.0.0 || $HOST == "::" ]] && shown_host=127.0.0.1
cat <<EOF

  Charter is starting on http://$shown_host:$PORT/
    API docs   http://$shown_host:$PORT/api/docs/
    Admin      http://$shown_host:$PORT/admin/
    Worker log $VAR_DIR/log/worker.log
    MLServer   staging http://127.0.0.1:${MLSERVER_PORT[staging]}/v2/  production http://127.0.0.1:${MLSERVER_PORT[production]}/v2/

  Demo logins (password: $DEMO_PASSWORD, as set when the demo data was first loaded)
    admin     site administrator
    author    registers models, versions and model cards
    reviewer  reviews evidence, requests changes or rejects
    approver  approves versions for deployment
    operator  deploys, rolls back, retires
    auditor   reads the audit trail, verifies the chain, exports evidence
    viewer    read-only

  Press Ctrl-C to stop.

EOF

# In the background with a wait, so SIGTERM reaches the trap at once instead of after gunicorn exits.
"$VENV/bin/gunicorn" governance.wsgi --bind "$HOST:$PORT" --workers 2 --timeout 120 \
  --access-logfile - --error-logfile - --capture-output &
WEB_PID=$!
rc=0
wait "$WEB_PID" || rc=$?
WEB_PID=""
exit "$rc"
