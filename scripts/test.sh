#!/usr/bin/env bash
# The test command: lint, Django checks, then pytest against a throwaway PostgreSQL and Redis.
#
#   scripts/test.sh                 everything
#   scripts/test.sh tests/foo -x    extra arguments go to pytest
#
# Works on a fresh Debian machine as root with only Python 3.11: missing system packages
# (PostgreSQL, Redis, Chromium, chromedriver) are installed with apt, the virtualenv is
# created and synced with requirements/dev.lock when the lock changed. Nothing it starts
# outlives it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV=.venv # always the checkout's own; CHARTER_VENV is for scripts/run.sh only
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# --- system packages -------------------------------------------------------------------------

find_pg_bindir() {
  local dir
  while read -r dir; do
    if [[ -x $dir/initdb && -x $dir/pg_ctl && -x $dir/postgres && -x $dir/createdb ]]; then
      echo "$dir"
      return 0
    fi
  done < <(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r)
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(command -v pg_ctl)"
    return 0
  fi
  return 1
}

ensure_system_packages() {
  local missing=()
  find_pg_bindir >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  if [[ ! -x .venv/bin/python ]]; then
    local py
    py="$(find_python)" || die "Python 3.11 or newer is needed (python3.11 or python3)."
    # Debian's python3 ships venv/ensurepip in a separate package.
    "$py" -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  fi
  ((${#missing[@]} == 0)) && return 0

  # Installing only what is missing would skip chromium-driver's match with chromium; install the set.
  local packages=(postgresql redis-server chromium chromium-driver)
  [[ " ${missing[*]} " == *" python3-venv "* ]] && packages+=(python3-venv)
  log "Missing ${missing[*]}; installing ${packages[*]} with apt"
  local sudo=()
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || die "Not root and no sudo: install ${packages[*]} first."
    sudo=(sudo)
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
}

# --- virtualenv ------------------------------------------------------------------------------

# --- throwaway services ----------------------------------------------------------------------

TMP=""
CHILD=""
PGBIN=""
PGDATA=""
AS_PG=()

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
    kill -TERM -- "-$CHILD" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$CHILD" 2>/dev/null || true
  fi
  if [[ -n $TMP ]]; then
    if [[ -f $TMP/redis.pid ]]; then
      local pid
      pid="$(cat "$TMP/redis.pid" 2>/dev/null || true)"
      if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
    if [[ -n $PGDATA && -f $PGDATA/postmaster.pid ]]; then
      (cd "$TMP" && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate -w -t 30 stop >/dev/null 2>&1) || true
    fi
    rm -rf "$TMP"
  fi
  exit "$rc"
}

free_ports() {
  # Bind both at once so the two services never get the same port.
  .venv/bin/python - <<'PY'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
}

start_postgres() {
  local port=$1 pgroot="$TMP/pg"
  PGBIN="$(find_pg_bindir)" || die "PostgreSQL binaries not found."
  if ((EUID == 0)); then
    id -u postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    AS_PG=(runuser -u postgres --)
    install -d -o postgres -g postgres -m 0700 "$pgroot"
  else
    install -d -m 0700 "$pgroot"
  fi
  PGDATA="$pgroot/data"
  log "Starting PostgreSQL ($("$PGBIN/postgres" --version | awk '{print $3}')) on 127.0.0.1:$port"
  (cd "$TMP" && "${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDATA" --auth=trust -U postgres --encoding=UTF8 --no-locale --no-sync) \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed."; }
  cat >>"$PGDATA/postgresql.conf" <<EOF

# throwaway test cluster
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$pgroot'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if ! (cd "$TMP" && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$pgroot/postgres.log" -w -t 60 start >/dev/null); then
    cat "$pgroot/postgres.log" >&2 || true
    die "PostgreSQL did not start."
  fi
}

# Two roles, as a deployment has them (README, "Running on PostgreSQL and Redis"): the owner creates
# and migrates the test databases (and drops them); the suite connects as the application role, which
# owns nothing and may only read and append to the audit log (tests/test_audit_roles.py).
create_roles() {
  local port=$1
  "$PGBIN/createuser" -h 127.0.0.1 -p "$port" -U postgres --createdb charter_owner
  "$PGBIN/createuser" -h 127.0.0.1 -p "$port" -U postgres charter_app
  "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U postgres -O charter_owner charter
}

redis_ping() {
  local port=$1
  if command -v redis-cli >/dev/null 2>&1; then
    [[ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" == PONG ]]
  else
    .venv/bin/python -c "import redis, sys; sys.exit(not redis.Redis(host='127.0.0.1', port=$port).ping())" 2>/dev/null
  fi
}

start_redis() {
  local port=$1
  log "Starting Redis ($(redis-server --version | awk '{print $3}')) on 127.0.0.1:$port"
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --dir "$TMP" --pidfile "$TMP/redis.pid" --logfile "$TMP/redis.log"
  for _ in $(seq 100); do
    redis_ping "$port" && return 0
    sleep 0.1
  done
  cat "$TMP/redis.log" >&2 || true
  die "Redis did not start."
}

# --- main ------------------------------------------------------------------------------------

ensure_system_packages
venv_sync requirements/dev.lock

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
TMP="$(mktemp -d -t charter-test.XXXXXX)"
chmod 0755 "$TMP" # the postgres user must reach its data dir inside

read -r PGPORT REDISPORT < <(free_ports)
[[ -n ${REDISPORT:-} ]] || die "Could not find free ports."
start_postgres "$PGPORT"
create_roles "$PGPORT"
start_redis "$REDISPORT"

mkdir -p "$TMP/var"
export DATABASE_URL="postgres://charter_app@127.0.0.1:$PGPORT/charter"
export DATABASE_OWNER_URL="postgres://charter_owner@127.0.0.1:$PGPORT/charter"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDISPORT/0"
export REDIS_URL="$CELERY_BROKER_URL"
export CHARTER_VAR_DIR="$TMP/var"
export SECRET_KEY=test-secret
export CHROMIUM_PATH="${CHROMIUM_PATH:-$(command -v chromium || echo /usr/bin/chromium)}"
export CHROMEDRIVER_PATH="${CHROMEDRIVER_PATH:-$(command -v chromedriver || echo /usr/bin/chromedriver)}"
export PGBIN
export PYTHONUNBUFFERED=1
unset CELERY_RESULT_BACKEND CELERY_TASK_ALWAYS_EAGER DJANGO_SETTINGS_MODULE STATIC_ROOT MEDIA_ROOT ARTIFACT_STORAGE

# Every step runs even when an earlier one fails, so one run reports everything; the exit
# status says whether all passed.
failed=()
step() {
  local name=$1 rc=0
  shift
  log "$name"
  if [[ -t 0 ]]; then
    # Interactive: stay in the foreground so Ctrl-C and pytest --pdb behave as usual.
    "$@" || rc=$?
  else
    # Unattended: run in its own process group and wait, so a SIGTERM from the CI runner
    # reaches the trap at once and the whole group (xdist workers included) is stopped.
    setsid "$@" &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
  fi
  ((rc == 0)) || failed+=("$name")
}

step "ruff check" .venv/bin/ruff check .
step "ruff format --check" .venv/bin/ruff format --check .
step "deptry" .venv/bin/deptry governance workers
step "lint-imports" .venv/bin/lint-imports --no-logo
step "manage.py check" .venv/bin/python manage.py check
step "makemigrations --check" .venv/bin/python manage.py makemigrations --check --dry-run
step "pytest" .venv/bin/pytest "$@"

if ((${#failed[@]})); then
  printf '\n\033[1;31mFAILED:\033[0m %s\n' "$(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" >&2
  exit 1
fi
printf '\n\033[1;32mAll checks passed.\033[0m\n' >&2
