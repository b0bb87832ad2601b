# Shared by scripts/run.sh and scripts/test.sh (sourced, not run).

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

find_python() {
  local candidate
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

lock_sha() { sha256sum "$1" | cut -d' ' -f1; }
stamp_of() { echo ".venv/.charter-$(basename "$1" .lock)-lock.sha256"; }
in_sync_with() { [[ -f $(stamp_of "$1") && "$(cat "$(stamp_of "$1")")" == "$(lock_sha "$1")" ]]; }

# venv_sync LOCK [SUPERSET_LOCK]: make .venv (Python >= 3.11) match LOCK, unless it already
# matches LOCK or a superset of it; reinstall only when the lock changed since the last sync.
venv_sync() {
  local lock=$1 superset=${2:-}
  if [[ -d .venv ]] && ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    log "The existing .venv is broken or too old; recreating it"
    rm -rf .venv
  fi
  if [[ ! -x .venv/bin/python ]]; then
    local py
    py="$(find_python)" || die "Python 3.11 or newer is needed (python3.11 or python3)."
    "$py" -c 'import ensurepip, venv' 2>/dev/null ||
      die "$py cannot create virtualenvs; install the python3-venv package (apt-get install python3-venv)."
    log "Creating .venv with $py"
    "$py" -m venv .venv
  fi
  in_sync_with "$lock" && return 0
  [[ -n $superset ]] && in_sync_with "$superset" && return 0
  log "Installing $lock into .venv"
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar off -r "$lock"
  lock_sha "$lock" >"$(stamp_of "$lock")"
}
