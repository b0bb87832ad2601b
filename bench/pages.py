#!/usr/bin/env python
"""Page weight of Charter's main pages: what a first visit downloads, and the server time per page.

Prints figures; it is not a test. The demo data (``manage.py seed_demo``: models, versions, cards,
reviews, evaluations, with the evaluations the demo leaves queued run here in-process by the worker's
task code) on the production static storage: collectstatic with hashed names into a temporary
STATIC_ROOT, pages and files fetched in-process through the whole middleware stack (Django's test
client, so WhiteNoise serves the static files as it does under gunicorn).

Per page: the HTML as sent without and with ``Accept-Encoding: gzip``, the JS/CSS/icon files the
page references and their bytes as served gzipped (what a first visit downloads), and the median
server time of the page without and with gzip. The reference, measured in the same run: the full
Plotly bundle this checkout replaced (read from git) against the partial one, and uncompressed HTML
(what the pages cost before: static files were already gzipped, HTML was not).

Usage (wipes a database whose name contains "bench")::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench
    .venv/bin/python bench/pages.py                 # ~30 s: seed_demo ~15 s, collectstatic, 20 requests a page
    .venv/bin/python bench/pages.py --requests 5    # quick
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, heading, median, setup_django, wipe  # noqa: E402

FULL_PLOTLY = "static/vendor/plotly.min.js"  # what the pages loaded before the partial bundle
PARTIAL_PLOTLY = "vendor/plotly-charter.min.js"
ASSET_RE = re.compile(r"""<(?:script[^>]*\ssrc|link[^>]*\shref)=["']([^"']+)["']""", re.IGNORECASE)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page and encoding")
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    return parser.parse_args()


def full_plotly() -> bytes | None:
    """The full bundle: in the working tree, else at HEAD, else just before the commit that deleted it."""
    path = ROOT / FULL_PLOTLY
    if path.exists():
        return path.read_bytes()

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)

    touched = git("log", "--format=%H", "--", FULL_PLOTLY).stdout.decode().split()
    for rev in ["HEAD", *(f"{commit}^" for commit in touched)]:
        shown = git("show", f"{rev}:{FULL_PLOTLY}")
        if shown.returncode == 0:
            return shown.stdout
    return None


def gz(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))  # WhiteNoise's level


def kb(n: float) -> str:
    return f"{n / 1024:,.1f}"


def seed() -> None:
    """The demo data, with every evaluation it queues run here (no broker, no worker)."""
    from django.core.management import call_command

    from governance.core.context import audit_context
    from governance.evaluations.models import EvaluationRun, RunStatus
    from workers.evaluations import run_evaluation

    with mock.patch("governance.celery.app.send_task"):  # nothing is published; the queued runs are run below
        call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
        for run in EvaluationRun.objects.filter(status=RunStatus.QUEUED).select_related("requested_by"):
            with audit_context(source="task", actor=run.requested_by):
                outcome = run_evaluation.run(run.pk)
            if outcome != "succeeded":
                run.refresh_from_db()
                print(f"  note: {run.kind} run {run.pk} {outcome}: {run.error_message}")


def pages() -> dict[str, tuple[str, str]]:
    """Name -> (URL, username of the demo user who opens it)."""
    from django.db.models import Count
    from django.urls import reverse

    from governance.approvals.models import ApprovalRequest
    from governance.evaluations.models import EvaluationRun, RunStatus
    from governance.registry.models import ModelVersion, RegisteredModel

    model = RegisteredModel.objects.annotate(n=Count("versions")).order_by("-n", "pk").first()
    version = ModelVersion.objects.filter(model=model).order_by("-number").first()
    found = {
        "home": (reverse("home"), "admin"),
        "models": (reverse("models"), "admin"),
        f"model ({model.name})": (reverse("model-detail", args=[model.pk]), "admin"),
        f"version ({model.name} v{version.number})": (reverse("version-detail", args=[version.pk]), "admin"),
    }
    done = EvaluationRun.objects.filter(status=RunStatus.SUCCEEDED).order_by("-pk")
    for kind in done.values_list("kind", flat=True).distinct().order_by("kind"):
        run = done.filter(kind=kind).first()
        found[f"evaluation: {kind}"] = (reverse("evaluation-detail", args=[run.pk]), "admin")
    for kind in ("fairness", "explainability", "performance", "data_quality"):
        pair = list(done.filter(kind=kind).order_by("version__number", "pk"))
        same_model = [r for r in pair if r.version.model_id == pair[-1].version.model_id] if pair else []
        if len(same_model) >= 2 and same_model[0].version_id != same_model[-1].version_id:
            a, b = same_model[0], same_model[-1]
            found[f"comparison ({kind})"] = (f"{reverse('evaluation-compare')}?a={a.pk}&b={b.pk}", "admin")
            break
    found["review queue"] = (reverse("reviews"), "reviewer")
    review = ApprovalRequest.objects.filter(status="open").order_by("-pk").first() or ApprovalRequest.objects.last()
    if review is not None:
        found[f"review ({review.version})"] = (reverse("review-detail", args=[review.pk]), "reviewer")
    found["audit log"] = (reverse("audit-log"), "admin")
    return found


def main():
    args = parse_args()
    # Collect into a fresh folder with the production storage (hashed names, gzip copies).
    static_root = tempfile.mkdtemp(prefix="charter-bench-static-")
    os.environ["STATIC_ROOT"] = static_root
    try:
        measure(args)
    finally:
        shutil.rmtree(static_root, ignore_errors=True)


def measure(args) -> None:
    setup_django(force=args.force)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from governance.core.context import audit_context

    storage = settings.STORAGES["staticfiles"]["BACKEND"]
    started = time.perf_counter()
    call_command("collectstatic", interactive=False, verbosity=0)
    collected = time.perf_counter() - started
    wipe()
    started = time.perf_counter()
    seed()
    seeded = time.perf_counter() - started

    heading("Plotly bundle: the full one the pages loaded before, and the partial one")
    from django.contrib.staticfiles.storage import staticfiles_storage

    partial_path = Path(settings.STATIC_ROOT) / staticfiles_storage.stored_name(PARTIAL_PLOTLY)
    partial = partial_path.read_bytes()
    partial_served_gz = (partial_path.with_name(partial_path.name + ".gz")).stat().st_size
    full = full_plotly()
    print(f"  {'':<28} {'raw KiB':>10} {'gzip KiB':>10}")
    if full is not None:
        print(f"  {'full plotly.min.js':<28} {kb(len(full)):>10} {kb(gz(full)):>10}")
    print(
        f"  {'partial plotly-charter':<28} {kb(len(partial)):>10} {kb(partial_served_gz):>10}   (as served: {partial_path.name}.gz)"
    )
    if full is not None:
        print(f"  {'partial / full':<28} {len(partial) / len(full):>10.2f} {partial_served_gz / gz(full):>10.2f}")
    full_gz = gz(full) if full is not None else None

    users = {u.username: u for u in get_user_model().objects.filter(username__in=["admin", "reviewer"])}
    clients = {}
    for name, user in users.items():
        clients[name] = Client(HTTP_HOST="localhost")
        with audit_context(source="cli", actor=user):  # force_login fires the audited login signal
            clients[name].force_login(user)
    static = Client(HTTP_HOST="localhost")
    served: dict[str, tuple[int, str]] = {}  # asset URL -> (bytes as served with gzip asked, Cache-Control)

    def asset(url: str) -> tuple[int, str]:
        if url not in served:
            response = static.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
            body = b"".join(response.streaming_content) if response.streaming else response.content
            response.close()
            if response.status_code != 200:
                raise SystemExit(f"{url} answered {response.status_code}")
            served[url] = (len(body), response.get("Cache-Control", ""))
        return served[url]

    heading(f"Pages: bytes of a first visit, server time (median of {args.requests}, in-process)")
    print(f"  storage {storage}; collectstatic {collected:.1f} s; seed_demo and its evaluations {seeded:.0f} s")
    print(
        f"  {'page':<34} {'HTML KiB':>8} {'gz KiB':>7} {'gz/raw':>6} │ {'assets':>6} {'gz KiB':>7}"
        f" │ {'before KiB':>10} {'now KiB':>8} {'now/before':>10} │ {'ms':>6} {'ms gz':>6}"
    )
    totals = {"before": 0, "now": 0}
    for name, (url, username) in pages().items():
        client = clients[username]
        plain = client.get(url)
        if plain.status_code != 200:
            raise SystemExit(f"{name}: {url} answered {plain.status_code}")
        zipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate")
        assert zipped.get("Content-Encoding") == "gzip", f"{name}: not compressed"
        html = plain.content
        urls = sorted({u for u in ASSET_RE.findall(html.decode()) if u.startswith(settings.STATIC_URL)})
        sizes = {u: asset(u)[0] for u in urls}
        assets_now = sum(sizes.values())
        # before: HTML uncompressed, the full Plotly bundle where the page has the partial one
        assets_before = sum(
            full_gz if (full_gz is not None and "/vendor/plotly-charter.min." in u) else n for u, n in sizes.items()
        )
        before, now = len(html) + assets_before, len(zipped.content) + assets_now
        totals["before"] += before
        totals["now"] += now
        times = {"plain": [], "gzip": []}
        for _ in range(args.requests):
            for kind, extra in (("plain", {}), ("gzip", {"HTTP_ACCEPT_ENCODING": "gzip, deflate"})):
                t0 = time.perf_counter()
                client.get(url, **extra)
                times[kind].append(time.perf_counter() - t0)
        print(
            f"  {name[:34]:<34} {kb(len(html)):>8} {kb(len(zipped.content)):>7} {len(zipped.content) / len(html):>6.2f} │"
            f" {len(urls):>6} {kb(assets_now):>7} │ {kb(before):>10} {kb(now):>8} {now / before:>10.2f} │"
            f" {median(times['plain']) * 1000:>6.1f} {median(times['gzip']) * 1000:>6.1f}"
        )
    print(f"  {'sum, each page on a cold cache':<34} {'':>8} {'':>7} {'':>6} │ {'':>6} {'':>7} │ {kb(totals['before']):>10}"
          f" {kb(totals['now']):>8} {totals['now'] / totals['before']:>10.2f} │")  # fmt: skip
    controls = sorted({cc for _, cc in served.values()})
    print(f"  static files referenced by pages: {len(served)}, Cache-Control: {' | '.join(controls)}")
    print("  before = HTML uncompressed + static files gzipped with the full Plotly bundle; now = what is sent now.")
    print("  A repeat visit now downloads only the page: every static file it names is cached as immutable.")


if __name__ == "__main__":
    main()
