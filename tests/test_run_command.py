"""The README's run command, for real: scripts/run.sh on the embedded default (SQLite, the
filesystem broker, a real Celery worker, gunicorn), then a demo reviewer in headless Chromium.

run.sh runs in a virtualenv built from requirements/base.lock alone, as on a fresh clone: the
test virtualenv has every dev package, so a runtime import that only dev.lock pins would pass here
and fail for a new user. That virtualenv lives outside the checkout, one per base.lock content."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import stop_process_group

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "var" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
]  # fmt: skip
DEMO_PASSWORD = "charter-demo"
BASE_LOCK = ROOT / "requirements" / "base.lock"
# in dev.lock only: none of them may be importable in the virtualenv run.sh used
DEV_ONLY_MODULES = ("pytest", "pytest_django", "xdist", "factory", "playwright", "skl2onnx", "deptry")

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_venv() -> Path:
    """Where run.sh keeps its base.lock-only virtualenv: outside the checkout, so a clean clone on
    this machine reuses it, and named by base.lock's sha256, so it never holds anything else (a
    changed lock is a new directory; the ones for older locks are removed once unused)."""
    sha = hashlib.sha256(BASE_LOCK.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "charter"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / f"venv-base-{sha}"
    with open(cache / "venv-base.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for old in cache.glob("venv-base-*"):
            # an hour unused: not a run that another checkout (with another lock) has going now
            if old.is_dir() and old != venv and time.time() - _last_used(old) > 3600:
                shutil.rmtree(old, ignore_errors=True)
        if venv.is_dir():
            (venv / ".charter-last-used").touch()
    return venv


def _last_used(venv: Path) -> float:
    marker = venv / ".charter-last-used"
    return (marker if marker.exists() else venv).stat().st_mtime


@pytest.fixture(scope="module")
def served(tmp_path_factory, base_venv):
    """Start scripts/run.sh exactly as the README says, on a private var dir and port, in the
    base.lock-only virtualenv."""
    var = tmp_path_factory.mktemp("run-var")
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY", "MEDIA_ROOT")
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }
    # nothing of the test virtualenv leaks in: run.sh makes its own from a system Python
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p and not Path(p).resolve().is_relative_to(ROOT)
    )
    from tests.serving_support import free_base_port

    env.update(
        CHARTER_VAR_DIR=str(var), CHARTER_VENV=str(base_venv), PORT=str(port), HOST="127.0.0.1",
        DEMO_PASSWORD=DEMO_PASSWORD, CHARTER_MLSERVER_STAGING_PORT=str(free_base_port()),
        CHARTER_MLSERVER_PRODUCTION_PORT=str(free_base_port()),
    )  # fmt: skip
    log = open(var / "run.log", "wb")
    # One build at a time: a second session waits for the first to come up, then finds it synced.
    building = open(base_venv.parent / "venv-base.lock", "w")
    fcntl.flock(building, fcntl.LOCK_EX)
    # A first build installs all of base.lock (several minutes cold); later runs only start.
    synced = (base_venv / ".charter-base-lock.sha256").is_file()
    proc = subprocess.Popen(
        ["scripts/run.sh"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + (300 if synced else 1500)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if requests.get(f"{base}/login/", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    building.close()
    if proc.poll() is not None:
        pytest.fail("scripts/run.sh did not come up:\n" + (var / "run.log").read_text(errors="replace")[-4000:])
    yield base, var
    stop_process_group(proc, timeout=60)
    log.close()


def test_run_command_runs_in_a_base_lock_only_virtualenv(served, base_venv):
    _, var = served
    # the worker run.sh started is the base virtualenv's
    worker = int((var / "run" / "worker.pid").read_text())
    cmdline = Path(f"/proc/{worker}/cmdline").read_bytes().split(b"\0")
    assert any(arg.decode().startswith(str(base_venv) + "/bin/") for arg in cmdline), cmdline
    # synced from base.lock (not short-circuited by a dev.lock stamp), and nothing from dev.lock in it
    stamp = base_venv / ".charter-base-lock.sha256"
    assert stamp.read_text().strip() == hashlib.sha256(BASE_LOCK.read_bytes()).hexdigest()
    assert not (base_venv / ".charter-dev-lock.sha256").exists()
    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    found = subprocess.run(
        [base_venv / "bin" / "python", "-c", probe, "requests", *DEV_ONLY_MODULES],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert found == ["requests"], f"dev-only packages in the run command's virtualenv: {found[1:]}"
    log = (var / "log" / "worker.log").read_text(errors="replace")
    assert "ImportError" not in log and "ModuleNotFoundError" not in log


def _login(base: str, username: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    r = session.post(
        f"{base}/login/",
        data={"username": username, "password": DEMO_PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{base}/login/"},
    )
    assert r.status_code == 200 and "/login/" not in r.url, "demo login failed"
    return session


def test_run_command_serves_demo_data_to_a_reviewer(served):
    base, var = served
    reviewer = _login(base, "reviewer")

    models = reviewer.get(f"{base}/models/")
    assert models.status_code == 200
    for name in ("credit-scoring", "churn-predictor", "iris-classifier"):
        assert name in models.text

    api_versions = reviewer.get(f"{base}/api/v1/versions/", params={"page_size": 50}).json()["results"]
    assert len(api_versions) >= 6
    credit = [v for v in api_versions if v["model_name"] == "credit-scoring"]
    deployed = next(v for v in credit if v["stage"] == "deployed")

    page = reviewer.get(f"{base}/versions/{deployed['id']}/")
    assert page.status_code == 200
    assert deployed["artifact_sha256"] in page.text
    assert "Intended use" in page.text  # the model card
    assert "version.transition" in page.text or "transition" in page.text.lower()  # the audit trail

    trail = reviewer.get(f"{base}/api/v1/versions/{deployed['id']}/audit/").json()["results"]
    assert {e["action"] for e in trail} >= {"version.create", "version.transition"}

    # the real worker (filesystem broker) re-read and verified every demo artifact
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        versions = reviewer.get(f"{base}/api/v1/versions/", params={"page_size": 50}).json()["results"]
        if all(v["artifact_metadata"].get("sha256_verified") for v in versions):
            break
        time.sleep(1)
    else:
        pytest.fail("the Celery worker did not inspect the demo artifacts")
    assert all(v["artifact_metadata"]["detected_format"] == "sklearn-joblib" for v in versions)

    audit = reviewer.get(f"{base}/audit/")
    assert audit.status_code == 200 and "version.create" in audit.text

    # the demo's approved version is live in staging on the run command's own MLServer, whose port it
    # printed, and answers a real prediction there through the Open Inference Protocol
    printed = re.search(r"MLServer\s+staging http://127\.0\.0\.1:(\d+)/v2/", (var / "run.log").read_text())
    assert printed, (var / "run.log").read_text()[-3000:]
    live = reviewer.get(f"{base}/api/v1/deployments/", params={"current": "true"}).json()["results"]
    staged = next(d for d in live if d["environment_name"] == "staging")
    assert (staged["model_name"], staged["version"]) == ("credit-scoring", deployed["id"])
    probe = reviewer.get(f"{base}/api/v1/versions/{deployed['id']}/probe/").json()["payload"]
    name = f"credit-risk-credit-scoring-v{deployed['number']}"
    answer = requests.post(f"http://127.0.0.1:{printed.group(1)}/v2/models/{name}/infer", json=probe, timeout=10)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["data"][0] in (0, 1), answer.text[:300]


def _demo_evaluations_finished(session: requests.Session, base: str, timeout: float = 240) -> list[dict]:
    """The demo's evaluations, once the real worker has run every queued one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = session.get(f"{base}/api/v1/evaluations/", params={"page_size": 100}).json()["results"]
        if runs and all(r["status"] in ("succeeded", "failed", "cancelled") for r in runs):
            return runs
        time.sleep(2)
    pytest.fail(f"the demo's evaluations did not finish: {[(r['id'], r['kind'], r['status']) for r in runs]}")


def test_a_newcomer_sees_a_demo_that_tells_the_truth_in_headless_chromium(served):
    """What the README's tour shows, in the order a newcomer clicks: every chart draws, the deployed
    version's gate passes where it is deployed, the open review shows its evidence inline. The
    README's screenshots (docs/screenshots/) are copies of what this writes to var/screenshots/."""
    from playwright.sync_api import sync_playwright

    from tests.browser import assert_charts_drew

    base, _ = served
    reviewer = _login(base, "reviewer")
    runs = _demo_evaluations_finished(reviewer, base)
    assert {r["status"] for r in runs} == {"succeeded"}, [(r["kind"], r["status"], r.get("error_code")) for r in runs]
    versions = reviewer.get(f"{base}/api/v1/versions/", params={"page_size": 50}).json()["results"]
    credit = {v["number"]: v for v in versions if v["model_name"] == "credit-scoring"}
    deployed, candidate = credit[2], credit[3]
    assert deployed["stage"] == "deployed" and candidate["stage"] == "in_review"
    for environment in ("staging", "production"):
        gate = reviewer.get(f"{base}/api/v1/versions/{deployed['id']}/gate/", params={"environment": environment})
        assert gate.json()["verdict"] == "pass", gate.json()
    review = reviewer.get(
        f"{base}/api/v1/approval-requests/", params={"version": candidate["id"], "status": "open"}
    ).json()["results"][0]
    fairness = {r["version"]: r["id"] for r in runs if r["kind"] == "fairness"}

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/")
        assert "/login/" in page.url
        page.fill("input[name=username]", "reviewer")
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("networkidle")
        assert "/login/" not in page.url
        assert_charts_drew(page)
        page.screenshot(path=str(SCREENSHOTS / "home.png"), full_page=True)

        page.goto(f"{base}/models/")
        assert page.locator("text=credit-scoring").first.is_visible()
        page.screenshot(path=str(SCREENSHOTS / "models.png"), full_page=True)

        page.locator("a", has_text="credit-scoring").first.click()
        page.wait_for_load_state("networkidle")
        assert "/models/" in page.url
        page.screenshot(path=str(SCREENSHOTS / "model.png"), full_page=True)

        page.goto(f"{base}/versions/{deployed['id']}/")
        page.wait_for_load_state("networkidle")
        body = page.inner_text("body")
        assert deployed["artifact_sha256"] in body and "Intended use" in body
        assert "PASS" in page.inner_text("#gate-production").upper()
        page.screenshot(path=str(SCREENSHOTS / "version.png"), full_page=True)
        page.locator("#gate").screenshot(path=str(SCREENSHOTS / "gate-panel.png"))

        page.goto(f"{base}/reviews/{review['id']}/")
        assert_charts_drew(page, at_least=3)
        assert "Open the full evaluation" in page.inner_text("body")
        page.screenshot(path=str(SCREENSHOTS / "review-page.png"), full_page=True)

        page.goto(f"{base}/evaluations/{fairness[deployed['id']]}/")
        assert_charts_drew(page, at_least=2)
        page.screenshot(path=str(SCREENSHOTS / "evaluation-fairness.png"), full_page=True)

        page.goto(f"{base}/evaluations/compare/?a={fairness[deployed['id']]}&b={fairness[candidate['id']]}")
        assert_charts_drew(page, at_least=2)
        page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)

        page.goto(f"{base}/audit/?action=review.*")
        assert "review.request" in page.inner_text("body")
        page.screenshot(path=str(SCREENSHOTS / "audit.png"), full_page=True)

        page.goto(f"{base}/serving/")
        body = page.inner_text("body")
        assert "staging" in body and "production" in body and "credit-scoring" in body and "churn-predictor" in body
        assert "40 req · 0.0% errors" in body  # the demo's predictions, as the serving watch counted them
        page.screenshot(path=str(SCREENSHOTS / "serving.png"), full_page=True)
        page.goto(f"{base}/serving/timeline/")
        assert_charts_drew(page, at_least=2)
        page.screenshot(path=str(SCREENSHOTS / "timeline.png"), full_page=True)
        browser.close()
    assert (SCREENSHOTS / "version.png").stat().st_size > 10_000
