"""What the bench scripts share: Django setup on PostgreSQL, the wipe guard, fast seeding, stats.

The bench scripts print figures; they are not tests. They wipe the database they are given,
so they refuse one whose name does not contain ``bench`` unless ``--force`` is passed.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent


def setup_django(*, force: bool = False, migrate: bool = True) -> None:
    """Configure Django from the environment; insist on PostgreSQL and on a bench database."""
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme not in ("postgres", "postgresql"):
        sys.exit("DATABASE_URL must point at PostgreSQL, e.g. postgres://postgres@127.0.0.1:5544/charter_bench")
    db_name = urlsplit(url).path.lstrip("/")
    if "bench" not in db_name and not force:
        sys.exit(f"Refusing to wipe database {db_name!r}: its name does not contain 'bench' (pass --force to insist).")
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "governance.settings")
    os.environ.setdefault("SECRET_KEY", "charter-bench")
    os.environ.setdefault("CHARTER_VAR_DIR", tempfile.mkdtemp(prefix="charter-bench-"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def raw_connection():
    """The psycopg connection under Django's default connection (for COPY and named cursors)."""
    from django.db import connection

    connection.ensure_connection()
    return connection.connection


def wipe() -> None:
    """Empty every table Django manages here (what ``manage.py flush`` does), ids restarted."""
    from django.db import connection

    keep = {"django_migrations", "django_content_type", "auth_permission"}
    tables = sorted(t for t in connection.introspection.django_table_names(only_existing=True) if t not in keep)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(connection.ops.quote_name(t) for t in tables)} RESTART IDENTITY CASCADE")
    import importlib

    from django.apps import apps

    from governance.audit.models import ChainHead

    ChainHead.objects.get_or_create(id=1)
    # what the data migrations put there: the default policy of each risk tier
    importlib.import_module("governance.approvals.migrations.0002_default_policies").create(apps, None)


def vacuum_analyze(*tables: str) -> None:
    """VACUUM ANALYZE the seeded tables, then CHECKPOINT so the seed's writes are flushed before
    anything is measured (not during the first run)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")
    checkpoint(connection)


def checkpoint(conn) -> None:
    """CHECKPOINT, when the role may (superuser or pg_checkpoint); otherwise nothing."""
    from contextlib import suppress

    with suppress(Exception), conn.cursor() as cursor:
        cursor.execute("CHECKPOINT")


def uneven_counts(total: int, n_models: int, *, big: list[int], seed: int = 42) -> list[int]:
    """Versions per model: the first models get the ``big`` counts, the rest share what is left along a Zipf-like curve."""
    rest, others = total - sum(big), n_models - len(big)
    if rest < 0:
        raise SystemExit(f"--versions ({total:,}) must be at least the big models' versions together ({sum(big):,}).")
    if others <= 0:
        return big[:n_models]
    rng = random.Random(seed)
    weights = [1 / (rank**0.9) for rank in range(1, others + 1)]
    rng.shuffle(weights)
    scale = rest / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in rng.sample(range(others), rest - sum(counts)):
        counts[i] += 1
    return [*big, *counts]


_STAGES = ["retired", "deprecated", "draft", "retired", "approved", "rejected", "deployed", "in_review"]


def seed_models(*, team_ids: list[int], creator_id: int, n: int, prefix: str = "model") -> list[int]:
    """``n`` registered models spread round-robin over the teams, in one INSERT ... SELECT."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO registry_registeredmodel (name, description, use_case, risk_tier, business_kpis, created_at,
                                                  updated_at, latest_version_number, version_count, created_by_id,
                                                  team_id)
            SELECT %(prefix)s || '-' || lpad(g::text, 6, '0'),
                   'Seeded by bench/: a model registered for scale measurements.',
                   'use case ' || mod(g, 37),
                   (ARRAY['minimal', 'limited', 'high', 'unacceptable'])[1 + mod(g, 4)],
                   '["approval rate", "default rate"]'::jsonb,
                   now() - make_interval(mins => g), now() - make_interval(secs => g), 0, 0, %(creator)s,
                   (%(teams)s::bigint[])[1 + mod(g - 1, %(nteams)s)]
              FROM generate_series(1, %(n)s) AS g
            RETURNING id
            """,
            {"prefix": prefix, "creator": creator_id, "teams": team_ids, "nteams": len(team_ids), "n": n},
        )
        return sorted(row[0] for row in cursor.fetchall())


def seed_versions(*, counts: dict[int, int], creator_id: int, spans: dict[int, float] | None = None) -> int:
    """Versions 1..n for each model, in one INSERT ... SELECT over generate_series.

    Rows are inserted in creation-time order with every model's versions spread over the past
    year (or over the first ``spans[model_id]`` fraction of it: a model that went quiet), so ids
    interleave across models as they do in a real registry. The model's denormalised
    ``latest_version_number`` and ``version_count`` are set to match.
    """
    spans = spans or {}
    from django.db import connection

    raw = raw_connection()
    with raw.cursor() as cur:
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS bench_counts (model_id bigint PRIMARY KEY, n int NOT NULL, span float8 NOT NULL)"
        )
        cur.execute("TRUNCATE bench_counts")
        with cur.copy("COPY bench_counts (model_id, n, span) FROM STDIN") as copy:
            for model_id, n in counts.items():
                if n > 0:
                    copy.write_row((model_id, n, spans.get(model_id, 1.0)))
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO registry_modelversion (model_id, number, stage, description, artifact_sha256, artifact_size,
                artifact_name, artifact_path, artifact_metadata, framework, artifact_format, training_data_ref,
                evaluation_data_ref, preprocessing_ref, preprocessing_fingerprint, hyperparameters, metrics, tags,
                training_profile, card_completeness, created_at, updated_at, stage_changed_at, created_by_id,
                integrity_problem)
            SELECT c.model_id, s.num, (%(stages)s::text[])[1 + mod(s.num, 8)], 'Seeded version', d.h,
                   2048 + mod(s.num, 4096), 'model.joblib', 'sha256/' || left(d.h, 2) || '/' || d.h, '{}'::jsonb,
                   'sklearn', 'sklearn-joblib', 'dvc://data@v' || s.num || '#train.parquet',
                   'dvc://data@v' || s.num || '#eval.parquet', '', '',
                   jsonb_build_object('C', 1.0, 'max_iter', 100 + mod(s.num, 50)),
                   jsonb_build_object('accuracy', round((0.8 + mod(s.num, 100) / 1000.0)::numeric, 3)),
                   '["seeded"]'::jsonb, '{}'::jsonb, 0, t.at, t.at, t.at, %(creator)s, ''
              FROM bench_counts c
              CROSS JOIN LATERAL generate_series(1, c.n) AS s(num)
              CROSS JOIN LATERAL (SELECT encode(sha256(convert_to(c.model_id || ':' || s.num, 'UTF8')), 'hex') AS h) d
              CROSS JOIN LATERAL (SELECT s.num::float8 / c.n * c.span AS frac) f
              CROSS JOIN LATERAL (SELECT now() - interval '365 days' + f.frac * interval '364 days' AS at) t
             ORDER BY f.frac, c.model_id
            """,
            {"stages": _STAGES, "creator": creator_id},
        )
        inserted = cursor.rowcount
        cursor.execute(
            """
            UPDATE registry_registeredmodel m
               SET latest_version_number = m.latest_version_number + c.n, version_count = m.version_count + c.n
              FROM bench_counts c
             WHERE m.id = c.model_id
            """
        )
    return inserted


def _ts_strings(start: dt.datetime, step_us: int, n: int) -> Iterator[str]:
    from governance.audit.chain import TS_FORMAT

    step = dt.timedelta(microseconds=step_us)
    at = start
    for _ in range(n):
        yield at.strftime(TS_FORMAT)
        at += step


AUDIT_COLUMNS = (
    "seq", "created_at", "actor_id", "actor_label", "source", "request_id", "action", "object_type", "object_id",
    "team_id", "changes", "prev_hash", "hash",
)  # fmt: skip


def seed_audit_events(
    *, n: int, actors: list[tuple[int, str]], models: list[tuple[int, int]], versions: list[tuple[int, int, int]]
) -> tuple[int, str]:
    """Append ``n`` events that continue the current chain, hashed here and loaded with COPY.

    ``models`` is ``[(id, team_id)]``, ``versions`` ``[(id, number, team_id)]``. Events are
    a plausible mix: a create for every model and version, then transitions, edits and card
    saves, with before/after snapshots of realistic size. Returns the new head (seq, hash).
    """
    from governance.audit import chain
    from governance.audit.models import ChainHead

    head = ChainHead.objects.get(id=1)
    seq, prev = head.seq, head.hash
    rng = random.Random(7)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    step_us = int(365 * 86400 * 1e6 / max(n, 1))
    cj = chain.canonical_json

    def body(kind: str, obj_id: int, number: int, team_id: int, i: int) -> str:
        if kind == "model.create":
            after = {"id": obj_id, "team": team_id, "name": f"model-{obj_id:06d}", "description": "Seeded by bench/.",
                     "use_case": f"use case {obj_id % 37}", "risk_tier": "limited", "owners": [],
                     "business_kpis": ["approval rate", "default rate"]}  # fmt: skip
            return cj({"after": after})
        if kind == "version.create":
            after = {"id": obj_id, "number": number, "stage": "draft", "description": "Seeded version",
                     "artifact_sha256": f"{rng.getrandbits(256):064x}", "artifact_size": 2048 + i % 4096,
                     "artifact_name": "model.joblib", "framework": "sklearn", "artifact_format": "sklearn-joblib",
                     "training_data_ref": f"dvc://data@v{i}#train.parquet", "evaluation_data_ref": "",
                     "preprocessing_ref": "", "preprocessing_fingerprint": "",
                     "hyperparameters": {"C": 1.0, "max_iter": 100}, "metrics": {"accuracy": 0.85}, "tags": ["seeded"]}  # fmt: skip
            return cj({"after": after})
        if kind == "version.transition":
            return cj(
                {
                    "before": {"stage": "in_review"},
                    "after": {"stage": "approved"},
                    "reason": "Evidence reviewed; gates pass.",
                }
            )
        if kind == "model.update":
            snap = {"id": obj_id, "team": team_id, "name": f"model-{obj_id:06d}", "use_case": "credit scoring",
                    "risk_tier": "high", "owners": ["bench-member"], "business_kpis": ["approval rate"]}  # fmt: skip
            return cj({"before": snap | {"description": "Old text."}, "after": snap | {"description": f"Edit {i}."}})
        return cj({"after": {"id": i, "version": obj_id, "revision": 1 + i % 5, "completeness": 60, "comment": "",
                             "sections": {"intended_use": "Scoring retail credit applications in the EU."}}})  # fmt: skip

    def plan() -> Iterator[tuple[str, str, int, int, int]]:  # (action, object_type, object_id, number, team)
        made = 0
        for model_id, team_id in models:
            yield "model.create", "registry.registeredmodel", model_id, 0, team_id
            made += 1
        for version_id, number, team_id in versions:
            yield "version.create", "registry.modelversion", version_id, number, team_id
            made += 1
        kinds = ["version.transition", "version.transition", "model.update", "card.save"]
        while True:
            kind = kinds[made % 4]
            made += 1
            if kind == "model.update":
                model_id, team_id = models[rng.randrange(len(models))]
                yield kind, "registry.registeredmodel", model_id, 0, team_id
            else:
                version_id, number, team_id = versions[rng.randrange(len(versions))]
                otype = "registry.modelcard" if kind == "card.save" else "registry.modelversion"
                yield kind, otype, version_id, number, team_id

    raw = raw_connection()
    timestamps = _ts_strings(start, step_us, n)
    before_last = prev
    with raw.cursor() as cur, cur.copy(f"COPY audit_auditevent ({', '.join(AUDIT_COLUMNS)}) FROM STDIN") as copy:
        for i, (action, object_type, object_id, number, team_id) in zip(range(n), plan(), strict=False):
            seq += 1
            actor_id, actor_label = actors[i % len(actors)]
            created_at = next(timestamps)
            source = "api" if i % 3 else "ui"
            request_id = f"{rng.getrandbits(128):032x}"
            object_id = str(object_id)
            changes = body(action, int(object_id), number, team_id, i)
            digest = chain.event_hash(
                prev_hash=prev, seq=seq, created_at=created_at, actor_id=actor_id, actor_label=actor_label,
                source=source, request_id=request_id, action=action, object_type=object_type, object_id=object_id,
                team_id=team_id, changes=changes,
            )  # fmt: skip
            copy.write_row(
                (seq, created_at, actor_id, actor_label, source, request_id, action, object_type, object_id, team_id,
                 changes, prev, digest)
            )  # fmt: skip
            before_last, prev = prev, digest
    ChainHead.objects.filter(id=1).update(seq=seq, hash=prev, prev_hash=before_last)
    return seq, prev


def purge_broker() -> None:
    """Drop the artifact-inspection messages registrations enqueued (no worker consumes them here)."""
    from contextlib import suppress

    from governance.celery import app

    with suppress(Exception):
        app.control.purge()


# --- figures ----------------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class Timer:
    def __enter__(self):
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.started


def heading(text: str) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n== {text} " + "=" * max(0, 90 - len(text)) + f" (load {load})", flush=True)
