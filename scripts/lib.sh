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

# The virtualenv the scripts use: the sourcing script sets VENV (run.sh from $CHARTER_VENV,
# test.sh always .venv); a relative path is relative to the checkout root.
VENV="${VENV:-.venv}"

lock_sha() { sha256sum "$1" | cut -d' ' -f1; }
stamp_of() { echo "$VENV/.charter-$(basename "$1" .lock)-lock.sha256"; }
in_sync_with() { [[ -f $(stamp_of "$1") && "$(cat "$(stamp_of "$1")")" == "$(lock_sha "$1")" ]]; }

# venv_sync LOCK [SUPERSET_LOCK]: make $VENV (Python >= 3.11) match LOCK, unless it already
# matches LOCK or a superset of it; reinstall only when the lock changed since the last sync.
# A stamp says "synced" only after pip succeeded: every stamp is removed before pip starts, so
# a failed or interrupted install is redone on the next run. VENV_FORCE_SYNC=1 ignores stamps.
venv_sync() {
  local lock=$1 superset=${2:-}
  if [[ -d $VENV ]] && ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    # only ever a virtualenv (or an empty directory): CHARTER_VENV=~ by mistake must not cost a home
    if [[ -f $VENV/pyvenv.cfg ]]; then
      log "The existing $VENV is broken or too old; recreating it"
      rm -rf "$VENV"
    elif [[ -n "$(ls -A "$VENV")" ]]; then
      die "$VENV is neither a virtualenv nor empty; remove it or choose another (CHARTER_VENV=...)."
    fi
  fi
  if [[ ! -x $VENV/bin/python ]]; then
    local py
    py="$(find_python)" || die "Python 3.11 or newer is needed (python3.11 or python3)."
    "$py" -c 'import ensurepip, venv' 2>/dev/null ||
      die "$py cannot create virtualenvs; install the python3-venv package (apt-get install python3-venv)."
    log "Creating $VENV with $py"
    mkdir -p "$(dirname "$VENV")"
    "$py" -m venv "$VENV"
  fi
  if [[ ${VENV_FORCE_SYNC:-0} != 1 ]]; then
    in_sync_with "$lock" && return 0
    [[ -n $superset ]] && in_sync_with "$superset" && return 0
  fi
  log "Installing $lock into $VENV"
  rm -f "$VENV"/.charter-*-lock.sha256
  "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$lock" ||
    die "Installing $lock into $VENV failed; the next run tries again."
  lock_sha "$lock" >"$(stamp_of "$lock").tmp"
  mv -f "$(stamp_of "$lock").tmp" "$(stamp_of "$lock")"
}
