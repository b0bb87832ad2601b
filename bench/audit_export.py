#!/usr/bin/env python
"""Audit log exports at scale: CSV and JSONL through the API, against PostgreSQL's own COPY.

Prints figures; it is not a test. It WIPES the database it is given (every Django table) and
seeds 20 teams, 1,000 models and 1,000,000 hash-chained audit events (hashed
here with ``governance.audit.chain.event_hash``, loaded with COPY, a signed checkpoint at the
end), then measures, in the same run:

1. the reference: ``COPY (SELECT <the export's columns> FROM audit_auditevent ORDER BY seq) TO
   STDOUT`` in CSV, read to the end through psycopg by a fresh process;
2. ``GET /api/v1/audit-events/export/?format=csv`` and ``?format=jsonl`` as a superuser, read to
   the end (in-process through Django's test client, whole middleware stack) by a fresh process
   per export, which reports its own wall time and peak RSS (``ru_maxrss``);
3. the same exports filtered to one team (an auditor's view: 1/20 of the events).

Targets: export time <= 2x the COPY of the same rows; peak RSS of the exporting process < 150 MB.
Each figure is the best of ``--runs`` runs, the variants interleaved.

Usage, from a clone whose .venv/ holds requirements/base.lock::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench   # name must contain "bench"
    .venv/bin/python bench/audit_export.py                  # wipe, seed (about 1.5 min), measure
    .venv/bin/python bench/audit_export.py --reuse          # measure again on the data already seeded
    .venv/bin/python bench/audit_export.py --events 200000  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Timer,
    heading,
    raw_connection,
    seed_audit_events,
    seed_models,
    setup_django,
    vacuum_analyze,
    wipe,
)

TEAMS = 20
MODELS = 1_000
VERSIONS_PER_MODEL = 20
ROOT_USER = "bench-root"
AUDITOR = "bench-auditor"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=2, help="best of N for each figure")
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run when its size matches")
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    parser.add_argument("--child", choices=["copy", "csv", "jsonl", "idle"], help=argparse.SUPPRESS)
    parser.add_argument("--as-user", default=ROOT_USER, help=argparse.SUPPRESS)
    parser.add_argument("--team", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# --- seeding ----------------------------------------------------------------------------------


def seed(args) -> None:
    from django.contrib.auth import get_user_model

    from governance.accounts import services as accounts
    from governance.accounts.models import Role
    from governance.audit.models import AuditEvent
    from governance.audit.services import checkpoint_create
    from governance.core.context import audit_context
    from governance.registry.models import RegisteredModel

    User = get_user_model()
    heading("Seeding (the database is wiped first)")
    with Timer() as total:
        wipe()
        root = User.objects.create_superuser(ROOT_USER, "root@bench.invalid", "bench-password")
        with audit_context(source="cli", actor=root):
            teams = [accounts.team_create(actor=root, name=f"Bench team {i:02d}") for i in range(TEAMS)]
            auditor = User.objects.create_user(AUDITOR, "auditor@bench.invalid", "bench-password")
            accounts.membership_add(actor=root, team=teams[0], user=auditor, role=Role.AUDITOR)
            authors = []
            for i, team in enumerate(teams):
                author = User.objects.create_user(f"bench-author-{i:02d}", f"a{i}@bench.invalid", "bench-password")
                accounts.membership_add(actor=root, team=team, user=author, role=Role.AUTHOR)
                authors.append(author)
        team_ids = [t.pk for t in teams]
        seed_models(team_ids=team_ids, creator_id=authors[0].pk, n=MODELS)
        with Timer() as t:
            models = list(RegisteredModel.objects.order_by("pk").values_list("pk", "team_id"))
            # the events name versions by id; the export reads the log only, so no version rows are needed
            versions = [
                (i * VERSIONS_PER_MODEL + n, n, team_id)
                for i, (_, team_id) in enumerate(models)
                for n in range(1, VERSIONS_PER_MODEL + 1)
            ]
            actors = [(a.pk, a.username) for a in authors]
            todo = args.events - AuditEvent.objects.count()
            head_seq, _ = seed_audit_events(n=todo, actors=actors, models=models, versions=versions)
            checkpoint_create()
        print(f"audit events: {todo:,} hashed here and COPYed in {t.seconds:.1f}s (chain head #{head_seq:,})")
        vacuum_analyze("audit_auditevent", "registry_registeredmodel")
    print(f"seeded in {total.seconds:.1f}s")


# --- one measurement, in a fresh process --------------------------------------------------------


def child(args) -> None:
    """Run one export (or the COPY reference) to the end in this fresh process; print its figures as JSON.

    ``idle`` serves an export of one event: the peak RSS of a process that has loaded and used the
    same code, against which the big exports' peaks are read.
    """
    from django.contrib.auth import get_user_model
    from django.test import Client

    from governance.audit import exports, selectors
    from governance.core.context import audit_context

    user = get_user_model().objects.get(username=args.as_user)
    query = f"&team={args.team}" if args.team else ""
    nbytes = lines = 0
    before_mb = _rss_now_mb()
    started = time.perf_counter()
    if args.child == "copy":
        # the same rows as the export: the requester's scope, the same filter, the same columns and order
        events = selectors.event_list(user=user)
        if args.team:
            events = events.filter(team_id=args.team)
        statement, params = exports.copy_statement(events, "csv")
        with raw_connection().cursor() as cur, cur.copy(statement, params) as copy:
            for block in copy:
                nbytes += len(block)
                lines += bytes(block).count(b"\n")
    else:
        client = Client(HTTP_HOST="localhost")
        with audit_context(source="cli", actor=user):
            client.force_login(user)
        # first an export of one event, untimed: what the first request of a process loads (URLs,
        # views) is not the export's cost; for ``idle`` it is the whole run
        b"".join(client.get(f"/api/v1/audit-events/export/?format=csv{query}&seq_to=1").streaming_content)
        if args.child != "idle":
            before_mb = _rss_now_mb()
            started = time.perf_counter()
            response = client.get(f"/api/v1/audit-events/export/?format={args.child}{query}")
            assert response.status_code == 200, response.content[:500]
            for chunk in response.streaming_content:
                nbytes += len(chunk)
                lines += chunk.count(b"\n")
            response.close()
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"seconds": seconds, "bytes": nbytes, "lines": lines, "peak_rss_mb": peak_kb / 1024}
    print(json.dumps({**figures, "rss_before_mb": before_mb}))


def _rss_now_mb() -> float:
    """This process's resident memory now (Linux), to read a peak against what it held before."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_child(kind: str, *, as_user: str = ROOT_USER, team: int | None = None) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--as-user", as_user, "--force"]
    if team is not None:
        command += ["--team", str(team)]
    out = subprocess.run(command, capture_output=True, text=True, env=os.environ, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(args) -> list[str]:
    from governance.accounts.models import Team
    from governance.audit.models import AuditEvent

    total = AuditEvent.objects.count()
    first_team = Team.objects.order_by("pk").values_list("pk", flat=True).first()
    summary = []
    for label, as_user, team in [
        (f"every event ({total:,}), as a superuser", ROOT_USER, None),
        ("one team's events, as that team's auditor", AUDITOR, first_team),
    ]:
        heading(f"Export of {label}: best of {args.runs}")
        idle = run_child("idle", as_user=as_user)
        best: dict[str, dict] = {}
        for _ in range(args.runs):
            for kind in ("copy", "csv", "jsonl"):
                figures = run_child(kind, as_user=as_user, team=team)
                if kind not in best or figures["seconds"] < best[kind]["seconds"]:
                    best[kind] = figures
        reference = best["copy"]["seconds"]
        print(f"  the same process serving an export of one event: peak RSS {idle['peak_rss_mb']:.0f} MB")
        for kind in ("copy", "csv", "jsonl"):
            f = best[kind]
            ratio = f["seconds"] / reference
            name = "COPY ... TO STDOUT (CSV)" if kind == "copy" else f"export ?format={kind}"
            grew = f["peak_rss_mb"] - f["rss_before_mb"]
            print(
                f"  {name:<26} {f['seconds']:7.2f} s  {f['bytes'] / 1e6:8.1f} MB  {f['lines']:>10,} lines  "
                f"{ratio:5.2f}x COPY  peak RSS {f['peak_rss_mb']:4.0f} MB ({grew:+.1f} MB over the "
                f"{f['rss_before_mb']:.0f} MB held before it started)"
            )
            if kind != "copy":
                summary.append(
                    f"{label}: {kind} {f['seconds']:.2f}s = {ratio:.2f}x COPY (target <= 2x), peak RSS "
                    f"{f['peak_rss_mb']:.0f} MB, {grew:+.1f} MB over the process before it (target < 150 MB)"
                )
    return summary


def main():
    args = parse_args()
    if args.child:
        setup_django(force=True, migrate=False)
        child(args)
        return
    setup_django(force=args.force)
    from governance.audit.models import AuditEvent

    events = AuditEvent.objects.count()
    if args.reuse and events >= args.events:
        print(f"Reusing the seeded data: {events:,} audit events.")
    else:
        seed(args)
    summary = measure(args)
    heading("Summary")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    main()
