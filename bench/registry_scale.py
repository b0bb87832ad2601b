#!/usr/bin/env python
"""Registry and audit log at scale: list pages, the cost of the audit append, chain verification.

Prints figures; it is not a test. It WIPES the database it is given (every Django table) and
seeds 10,000 models, 200,000 versions (50,000 of them on one "big" model, 20,000 on a
"dormant" model with nothing in the last four months, the rest spread unevenly) and 1,000,000
hash-chained audit events, then measures:

1. first-page server time (median of --runs, in-process through Django's test client, whole
   middleware stack) and query count of the API lists (and the browser lists, when their URLs
   exist), as a superuser and as a team member; target < 50 ms and a query count that does not
   depend on the page size or the table size. Slow queries are EXPLAIN ANALYZEd.
2. the audit append cost: ``registry.services.version_create`` and ``model_update``, each write
   in its own transaction, against the very same service call with ``audit.record`` swapped for
   a no-op; and, as the worst case, a bare one-row UPDATE with and without ``audit.record``.
   Target: with-audit / without-audit <= 1.3.
3. chain verification (``audit.services.verify()`` in PostgreSQL and in Python) against the
   bare limit measured in the same run: the same rows read through a server-side cursor
   (itersize 10,000) and sha256-chained in Python over ``chain.canonical_line``. Target <= 1.5x.

Usage, from a clone whose .venv/ holds requirements/base.lock (``scripts/run.sh`` or ``scripts/test.sh`` create it)::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench   # name must contain "bench"
    .venv/bin/python bench/registry_scale.py                # wipe, seed (about a minute), measure
    .venv/bin/python bench/registry_scale.py --reuse        # measure again on the data already seeded
    .venv/bin/python bench/registry_scale.py --models 1000 --versions 20000 --big 5000 --dormant 2000 --events 100000  # quick

CELERY_BROKER_URL (optional) receives the artifact-inspection messages version registration
enqueues; the default is a filesystem broker under a temporary CHARTER_VAR_DIR.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Timer,
    heading,
    median,
    ms,
    percentile,
    purge_broker,
    seed_audit_events,
    seed_models,
    seed_versions,
    setup_django,
    uneven_counts,
    vacuum_analyze,
    wipe,
)

MEMBER_TEAMS = 4  # the member sees 4 of the --teams teams


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=200_000)
    parser.add_argument("--big", type=int, default=50_000, help="versions of the one big model")
    parser.add_argument(
        "--dormant", type=int, default=20_000, help="versions of a model that had none in the last third of the year"
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=20)
    parser.add_argument("--runs", type=int, default=20, help="timed requests per list page")
    parser.add_argument("--writes", type=int, default=2_000, help="writes per variant in the append-cost test")
    parser.add_argument("--verify-runs", type=int, default=2, help="best of N for each verification")
    parser.add_argument("--reuse", action="store_true", help="keep the data of a previous run when its size matches")
    parser.add_argument("--skip", action="append", default=[], choices=["lists", "append", "verify"])
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    return parser.parse_args()


# --- seeding ----------------------------------------------------------------------------------


def seeded_size():
    from governance.audit.models import AuditEvent
    from governance.registry.models import ModelVersion, RegisteredModel

    return RegisteredModel.objects.count(), ModelVersion.objects.count(), AuditEvent.objects.count()


def seed(args):
    from django.contrib.auth import get_user_model

    from governance.accounts import services as accounts
    from governance.accounts.models import Role
    from governance.audit.models import AuditEvent
    from governance.audit.services import checkpoint_create
    from governance.core.context import audit_context
    from governance.registry.models import ModelVersion, RegisteredModel

    User = get_user_model()
    heading("Seeding (the database is wiped first)")
    with Timer() as total:
        wipe()
        root = User.objects.create_superuser("bench-root", "root@bench.invalid", "bench-password")
        with audit_context(source="cli", actor=root):
            teams = [accounts.team_create(actor=root, name=f"Bench team {i:02d}") for i in range(args.teams)]
            member = User.objects.create_user("bench-member", "member@bench.invalid", "bench-password")
            for team in teams[:MEMBER_TEAMS]:
                for role in (Role.VIEWER, Role.AUTHOR):
                    accounts.membership_add(actor=root, team=team, user=member, role=role)
            authors = []
            for i, team in enumerate(teams):
                author = User.objects.create_user(f"bench-author-{i:02d}", f"a{i}@bench.invalid", "bench-password")
                accounts.membership_add(actor=root, team=team, user=author, role=Role.AUTHOR)
                authors.append(author)
        team_ids = [t.pk for t in teams]
        with Timer() as t:
            model_ids = seed_models(team_ids=team_ids, creator_id=authors[0].pk, n=args.models)
            RegisteredModel.objects.filter(pk=model_ids[0]).update(name="big-model")
            RegisteredModel.objects.filter(pk=model_ids[1]).update(name="dormant-model")
        print(f"models: {len(model_ids):,} in {t.seconds:.1f}s")
        with Timer() as t:
            counts = uneven_counts(args.versions, len(model_ids), big=[args.big, args.dormant])
            inserted = seed_versions(
                counts=dict(zip(model_ids, counts, strict=True)), creator_id=authors[0].pk, spans={model_ids[1]: 0.67}
            )
        print(
            f"versions: {inserted:,} in {t.seconds:.1f}s (big-model: {counts[0]:,}; dormant-model: {counts[1]:,}, "
            f"none in the last third of the year; the others 0..{max(counts[2:]):,})"
        )
        with Timer() as t:
            models = list(RegisteredModel.objects.order_by("pk").values_list("pk", "team_id"))
            versions = list(ModelVersion.objects.order_by("pk").values_list("pk", "number", "model__team_id"))
            actors = [(member.pk, member.username)] + [(a.pk, a.username) for a in authors]
            todo = args.events - AuditEvent.objects.count()
            head_seq, _ = seed_audit_events(n=todo, actors=actors, models=models, versions=versions)
            checkpoint_create()
        print(f"audit events: {todo:,} hashed here and COPYed in {t.seconds:.1f}s (chain head #{head_seq:,})")
        with Timer() as t:
            vacuum_analyze(
                "registry_registeredmodel", "registry_modelversion", "audit_auditevent", "accounts_membership"
            )
        print(f"VACUUM ANALYZE: {t.seconds:.1f}s")
    print(f"seeded in {total.seconds:.1f}s")


# --- 1. list pages ----------------------------------------------------------------------------


def logged_in_client(user):
    from django.test import Client

    from governance.core.context import audit_context

    client = Client(HTTP_HOST="localhost")
    with audit_context(source="cli", actor=user):  # logging in is itself audited
        client.force_login(user)
    return client


def with_param(url: str, param: str) -> str:
    return url + ("&" if "?" in url else "?") + param


class PageBroken(Exception):
    pass


def measure_page(client, url: str, runs: int):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(3):
        try:
            response = client.get(url)
        except Exception as exc:  # a broken page is a finding; report it and measure the others
            raise PageBroken(f"GET {url} raised {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise PageBroken(f"GET {url} answered {response.status_code}: {response.content[:300]!r}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        client.get(url)
        times.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    return median(times), percentile(times, 95), captured.captured_queries, response


def explain(sql: str) -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return "\n".join("      " + row[0] for row in cursor.fetchall())


def ui_candidates(big_id: int) -> list[tuple[str, str]]:
    from django.urls import Resolver404, resolve

    found = []
    for label, path in [
        ("UI model list", "/models/"),
        ("UI big model page", f"/models/{big_id}/"),
        ("UI version list", "/versions/"),
        ("UI versions of big model", f"/versions/?model={big_id}"),
        ("UI audit log", "/audit/"),
    ]:
        try:
            resolve(path.split("?")[0])
        except Resolver404:
            print(f"  ({label}: {path} does not resolve yet; skipped)")
            continue
        found.append((label, path))
    return found


def bench_lists(args) -> list[tuple[str, float, bool]]:
    from django.contrib.auth import get_user_model

    from governance.registry.models import RegisteredModel

    User = get_user_model()
    heading(f"1. List pages: median server time of {args.runs} requests, queries per request")
    big = RegisteredModel.objects.get(name="big-model")
    dormant = RegisteredModel.objects.get(name="dormant-model")
    print(
        f"big-model #{big.pk}: {big.version_count:,} versions; dormant-model #{dormant.pk}: {dormant.version_count:,} "
        "versions, the newest 4 months old; median/p95 in-process (test client, full middleware)"
    )
    pages = [
        ("API models", "/api/v1/models/"),
        ("API models, newest edit first", "/api/v1/models/?ordering=-updated_at"),
        ("API models, search", "/api/v1/models/?search=use%20case%2011"),
        ("API versions of big model", f"/api/v1/versions/?model={big.pk}"),
        ("API versions of big model, page 2", None),  # the cursor link of the page above
        ("API versions of dormant model", f"/api/v1/versions/?model={dormant.pk}"),
        ("API versions, all models", "/api/v1/versions/"),
        ("API versions, stage filter", "/api/v1/versions/?stage=approved"),
        ("API audit events", "/api/v1/audit-events/"),
        ("API audit trail of big model", f"/api/v1/models/{big.pk}/audit/"),
    ]
    pages += ui_candidates(big.pk)
    results = []
    slow_sql: list[tuple[str, str, float]] = []
    broken: list[str] = []
    for who in ("bench-root", "bench-member"):
        user = User.objects.get(username=who)
        client = logged_in_client(user)
        print(
            f"\n  as {who} ({'superuser' if user.is_superuser else f'member of {MEMBER_TEAMS} of {args.teams} teams'})"
        )
        print(f"  {'page':<38} {'median':>9} {'p95':>9} {'queries':>8} {'@size 5':>8}  {'slowest query':>13}")
        next_url = None
        for label, url in pages:
            if url is None:
                url = next_url
                if not url:
                    continue
            try:
                med, p95, queries, response = measure_page(client, url, args.runs)
            except PageBroken as exc:
                print(f"  {label:<38} BROKEN: {str(exc)[:200]}")
                broken.append(f"{label} [{who}]: {exc}")
                continue
            if label == "API versions of big model":
                next_url = response.json().get("next")
                next_url = next_url.split("localhost", 1)[-1] if next_url else None
            small = "-"
            if url.startswith("/api/"):
                _, _, small_queries, _ = measure_page(client, with_param(url, "page_size=5"), 1)
                small = str(len(small_queries))
            slowest = max(queries, key=lambda q: float(q["time"])) if queries else {"time": "0", "sql": ""}
            print(
                f"  {label:<38} {ms(med):>9} {ms(p95):>9} {len(queries):>8} {small:>8}  {float(slowest['time']) * 1000:>10.1f} ms"
            )
            results.append((f"{label} [{who}]", med, small in ("-", str(len(queries)))))
            if med > 0.050 or float(slowest["time"]) > 0.010:
                slow_sql.append((f"{label} [{who}]", slowest["sql"], float(slowest["time"])))
    if slow_sql:
        print("\n  EXPLAIN ANALYZE of the slowest query of each page over 50 ms (or with a query over 10 ms):")
        for label, sql, seconds in slow_sql:
            print(f"\n  -- {label}: {seconds * 1000:.1f} ms\n      {sql[:600]}")
            print(explain(sql))
    return results, broken


# --- 2. audit append cost ---------------------------------------------------------------------


def bench_append(args) -> list[tuple[str, float]]:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from governance.audit import services as audit
    from governance.audit.actions import AuditAction
    from governance.core.context import audit_context
    from governance.registry import services
    from governance.registry.models import RegisteredModel

    User = get_user_model()
    member = User.objects.get(username="bench-member")
    team_ids = sorted(set(member.memberships.values_list("team_id", flat=True)))
    target = (
        RegisteredModel.objects.filter(team_id=team_ids[0])
        .exclude(name__in=["big-model", "dormant-model"])
        .order_by("pk")
        .first()
    )
    target_versions = (
        RegisteredModel.objects.filter(team_id=team_ids[1])
        .exclude(name__in=["big-model", "dormant-model"])
        .order_by("pk")
        .first()
    )
    heading(f"2. Audit append cost: {args.writes:,} writes per variant, each its own transaction, interleaved")
    print(f"row: model #{target.pk} ({target.name}); versions registered on model #{target_versions.pk}")
    counter = iter(range(10**9))

    def update_without_audit():
        with transaction.atomic():
            model = RegisteredModel.objects.select_for_update().get(pk=target.pk)
            model.description = f"Edited by the bench, pass {next(counter)}."
            model.save()

    def update_with_audit():
        with transaction.atomic():
            model = RegisteredModel.objects.select_for_update().get(pk=target.pk)
            before = audit.snapshot(model)
            model.description = f"Edited by the bench, pass {next(counter)}."
            model.save()
            audit.record(
                action=AuditAction.MODEL_UPDATE, obj=model, before=before, after=audit.snapshot(model), actor=member
            )

    def update_service():
        services.model_update(actor=member, model=target, description=f"Edited by the bench, pass {next(counter)}.")

    def artifact():
        return SimpleUploadedFile("model.joblib", b"\x80\x04bench" + next(counter).to_bytes(8, "big") * 16)

    def register_service():
        services.version_create(
            actor=member, model=target_versions, artifact=artifact(), hyperparameters={"C": 1.0},
            metrics={"accuracy": 0.9}, tags=["bench"],
        )  # fmt: skip

    def without_audit(fn):
        # the very same service call with audit.record swapped for a no-op: "the same write without audit"
        def run():
            original = audit.record
            audit.record = lambda **kwargs: None
            try:
                fn()
            finally:
                audit.record = original

        return run

    variants = {
        "UPDATE, no audit (ORM, own transaction)": update_without_audit,
        "UPDATE + audit.record": update_with_audit,
        "services.model_update, audit off": without_audit(update_service),
        "services.model_update": update_service,
        "services.version_create, audit off": without_audit(register_service),
        "services.version_create": register_service,
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    block = 100
    with audit_context(source="cli", actor=member):
        for fn in variants.values():  # warm up
            for _ in range(20):
                fn()
        for _ in range(max(1, args.writes // block)):
            for name, fn in variants.items():
                for _ in range(block):
                    started = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - started)
    means = {name: sum(v) / len(v) for name, v in samples.items()}
    print(f"  {'variant':<42} {'mean':>9} {'median':>9} {'p95':>9} {'writes/s':>9}")
    for name, values in samples.items():
        print(
            f"  {name:<42} {ms(means[name]):>9} {ms(median(values)):>9} {ms(percentile(values, 95)):>9} {1 / means[name]:>9.0f}"
        )
    ratios = [
        ("services.version_create / same without audit",
         means["services.version_create"] / means["services.version_create, audit off"]),
        ("services.model_update / same without audit",
         means["services.model_update"] / means["services.model_update, audit off"]),
        ("worst case: bare one-row UPDATE + audit.record / UPDATE",
         means["UPDATE + audit.record"] / means["UPDATE, no audit (ORM, own transaction)"]),
    ]  # fmt: skip
    print()
    for label, ratio in ratios:
        print(f"  ratio {label:<55} {ratio:5.2f}x   (target <= 1.30x)")
    return ratios


# --- 3. verification --------------------------------------------------------------------------

_COLUMNS = (
    "id, seq, created_at, actor_id, actor_label, source, request_id, action, object_type, object_id, team_id, "
    "changes, prev_hash, hash"
)


def _bare_connection():
    """A plain psycopg connection, without the Python-level loaders Django registers (its
    timezone-aware timestamp loader alone costs seconds per million rows)."""
    import psycopg
    from django.db import connection

    params = {k: v for k, v in connection.get_connection_params().items() if k not in ("cursor_factory", "context")}
    return psycopg.connect(**params)


def bare_pass(*, hash_rows: bool, sample_lines: list[str] | None = None) -> tuple[int, int]:
    """Read every event in seq order through a named cursor; chain sha256 over ``chain.canonical_line`` when asked."""
    from governance.audit.chain import canonical_line
    from governance.audit.models import GENESIS_HASH

    sha256 = hashlib.sha256
    checked = broken = 0
    expected_prev, expected_seq = GENESIS_HASH, 1
    with _bare_connection() as conn, conn.cursor(name="bench_bare_verify") as cur:
        cur.itersize = 10_000
        cur.execute(f"SELECT {_COLUMNS} FROM audit_auditevent ORDER BY seq")
        for _pk, seq, created_at, actor_id, label, source, rid, action, otype, oid, team, changes, prev, digest in cur:
            checked += 1
            if seq != expected_seq or prev != expected_prev:
                broken += 1
            if hash_rows:
                line = canonical_line(
                    prev_hash=prev, seq=seq, created_at=created_at, actor_id=actor_id, actor_label=label,
                    source=source, request_id=rid, action=action, object_type=otype, object_id=oid, team_id=team,
                    changes=changes,
                )  # fmt: skip
                if sha256(line.encode()).hexdigest() != digest:
                    broken += 1
                if sample_lines is not None and len(sample_lines) < 100_000:
                    sample_lines.append(line)
            expected_prev, expected_seq = digest, seq + 1
    return checked, broken


def tight_pass() -> tuple[int, int]:
    """The same checks with the timestamp formatted by PostgreSQL (chain.SQL_TS_FORMAT) and the line joined inline."""
    from governance.audit.chain import SQL_TS_FORMAT
    from governance.audit.models import GENESIS_HASH

    sha256 = hashlib.sha256
    checked = broken = 0
    expected_prev, expected_seq = GENESIS_HASH, 1
    sql = (
        "SELECT seq, prev_hash, hash, concat_ws('|', seq::text, "
        f"to_char(created_at AT TIME ZONE 'UTC', {SQL_TS_FORMAT}), coalesce(actor_id::text, ''), actor_label, source, "
        "request_id, action, object_type, object_id, coalesce(team_id::text, ''), changes) "
        "FROM audit_auditevent ORDER BY seq"
    )
    with _bare_connection() as conn, conn.cursor(name="bench_tight_verify") as cur:
        cur.itersize = 10_000
        cur.execute(sql)
        for seq, prev, digest, rest in cur:
            checked += 1
            if seq != expected_seq or prev != expected_prev:
                broken += 1
            if sha256(f"{prev}|{rest}".encode()).hexdigest() != digest:
                broken += 1
            expected_prev, expected_seq = digest, seq + 1
    return checked, broken


def bench_verify(args) -> list[tuple[str, float]]:
    from governance.audit import services as audit

    heading(f"3. Chain verification (best of {args.verify_runs}, runs interleaved)")
    sample: list[str] = []
    runs = {
        "read": lambda: bare_pass(hash_rows=False),
        "bare": lambda: bare_pass(hash_rows=True, sample_lines=sample),
        "tight": tight_pass,
        "sql": lambda: audit.verify(in_database=True),
        "python": lambda: audit.verify(in_database=False),
    }
    best = {name: float("inf") for name in runs}
    results = {}
    for _ in range(args.verify_runs):
        for name, fn in runs.items():
            started = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - started)
    read_s, bare_s, sql_s, py_s = best["read"], best["bare"], best["sql"], best["python"]
    count, broken = results["bare"]
    tight_s, (_, tight_broken) = best["tight"], results["tight"]
    sql_result, py_result = results["sql"], results["python"]
    encoded = [line.encode() for line in sample]
    with Timer() as t:
        for line in encoded:
            hashlib.sha256(line).hexdigest()
    hash_only = t.seconds * count / max(len(encoded), 1)
    rate = lambda s: f"{count / s / 1000:,.0f}k events/s"  # noqa: E731
    print(f"  events: {count:,}; the bare passes found {broken} and {tight_broken} broken links (must be 0)")
    print(f"  read only, named cursor itersize 10k             {read_s:7.2f} s  {rate(read_s)}")
    print(f"  sha256 alone over the canonical lines (estimated) {hash_only:7.2f} s")
    print(f"  BARE LIMIT: read + canonical_line + sha256 chain  {bare_s:7.2f} s  {rate(bare_s)}")
    print(f"  tight: timestamp formatted by SQL, line joined   {tight_s:7.2f} s  {rate(tight_s)}")
    print(f"  verify() in PostgreSQL                            {sql_s:7.2f} s  {rate(sql_s)}  ok={sql_result.ok}")
    print(f"  verify() in Python                                {py_s:7.2f} s  {rate(py_s)}  ok={py_result.ok}")
    if not (sql_result.ok and py_result.ok):
        print(f"  !! verification failed: {sql_result.as_dict()} / {py_result.as_dict()}")
    ratios = [
        ("verify() in PostgreSQL / bare limit", sql_s / bare_s),
        ("verify() in Python / bare limit", py_s / bare_s),
        ("verify() in Python / tight pass", py_s / tight_s),
    ]
    print()
    for label, ratio in ratios:
        print(f"  ratio {label:<40} {ratio:5.2f}x   (target <= 1.50x)")
    return ratios


def main():
    args = parse_args()
    setup_django(force=args.force)
    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # broken pages are reported in one line
    models, versions, events = seeded_size()
    if args.reuse and models == args.models and versions >= args.versions and events >= args.events:
        print(f"Reusing the seeded data: {models:,} models, {versions:,} versions, {events:,} audit events.")
    else:
        seed(args)
    summary = []
    if "lists" not in args.skip:
        pages, broken = bench_lists(args)
        summary += [f"BROKEN page: {line[:200]}" for line in broken]
        slow = [(label, s) for label, s, _ in pages if s > 0.050]
        unfixed = [label for label, _, fixed in pages if not fixed]
        summary.append(f"list pages over 50 ms: {', '.join(f'{lb} {ms(s)}' for lb, s in slow) or 'none'}")
        summary.append(f"pages whose query count depends on page size: {', '.join(unfixed) or 'none'}")
    if "append" not in args.skip:
        try:
            append_ratios = bench_append(args)
        finally:
            purge_broker()
        summary += [f"{label}: {ratio:.2f}x (target <= 1.30x)" for label, ratio in append_ratios]
    if "verify" not in args.skip:
        summary += [f"{label}: {ratio:.2f}x (target <= 1.50x)" for label, ratio in bench_verify(args)]
    heading("Summary")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    main()
