"""scripts/lib.sh's venv_sync: a stamp says "synced" only after pip succeeded, so a failed or
interrupted install is redone on the next run. Bash against a fake virtualenv whose "python" only
records the pip calls (and fails them when told), so no package is installed."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/usr/bin/env bash
[[ $1 == -c ]] && exit 0  # the version probe
if [[ $1 == -m && $2 == pip ]]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  echo "pip ${*: -1} stamps:$(cd "$here" && ls .charter-*-lock.sha256 2>/dev/null | tr '\\n' ' ')" >>"$here/pip.log"
  [[ ! -e $here/pip-fails ]]
  exit
fi
exit 2
"""


@pytest.fixture
def venv(tmp_path) -> Path:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(FAKE_PYTHON)
    (venv / "bin" / "python").chmod(0o755)
    (tmp_path / "base.lock").write_text("django==5.2\n")
    (tmp_path / "dev.lock").write_text("django==5.2\npytest==9\n")
    return venv


def sync(venv: Path, *locks: str, force: bool = False) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "VENV": str(venv), "VENV_FORCE_SYNC": "1" if force else "0"}
    script = f'source {ROOT / "scripts" / "lib.sh"} && venv_sync "$@"'
    return subprocess.run(
        ["bash", "-c", script, "venv_sync", *locks], cwd=venv.parent, env=env, capture_output=True, text=True
    )


def pip_calls(venv: Path) -> list[str]:
    log = venv / "pip.log"
    return log.read_text().splitlines() if log.exists() else []


def stamps(venv: Path) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in venv.glob(".charter-*")}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_installs_once_and_stamps_after_pip_succeeds(venv):
    lock = venv.parent / "base.lock"
    assert sync(venv, "base.lock").returncode == 0
    assert sync(venv, "base.lock").returncode == 0
    assert pip_calls(venv) == ["pip base.lock stamps:"]  # once, and no stamp while pip ran
    assert stamps(venv) == {".charter-base-lock.sha256": sha(lock)}


def test_a_failed_install_leaves_no_stamp_and_is_redone(venv):
    lock = venv.parent / "base.lock"
    assert sync(venv, "base.lock").returncode == 0
    synced = lock.read_text()

    # the lock changes and pip fails (or is killed) half-way: no stamp may survive it,
    lock.write_text("django==5.2.1\n")
    (venv / "pip-fails").touch()
    failed = sync(venv, "base.lock")
    assert failed.returncode != 0 and "the next run tries again" in failed.stderr
    assert stamps(venv) == {}
    assert pip_calls(venv)[-1] == "pip base.lock stamps:"

    # not even the one for the lock the venv matched before, should the lock go back to it
    (venv / "pip-fails").unlink()
    lock.write_text(synced)
    assert sync(venv, "base.lock").returncode == 0
    assert len(pip_calls(venv)) == 3
    assert stamps(venv) == {".charter-base-lock.sha256": sha(lock)}


def test_a_synced_superset_is_enough_and_force_ignores_stamps(venv):
    assert sync(venv, "dev.lock").returncode == 0
    assert sync(venv, "base.lock", "dev.lock").returncode == 0  # dev.lock has all of base.lock
    assert pip_calls(venv) == ["pip dev.lock stamps:"]

    assert sync(venv, "base.lock", "dev.lock", force=True).returncode == 0
    # the dev stamp was removed before pip touched the venv: it no longer vouches for dev.lock
    assert pip_calls(venv)[-1] == "pip base.lock stamps:"
    assert stamps(venv) == {".charter-base-lock.sha256": sha(venv.parent / "base.lock")}
