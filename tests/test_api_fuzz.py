"""Schemathesis against the live server, with a token of every role: no 5xx, no answer the schema
does not describe (issue 11).

The demo data (teams, models, versions in every stage, reviews, policies, evaluations) is seeded
first, so the fuzzer reaches real objects; each demo user gets a token with every scope, and
schemathesis runs all its checks and all its phases (examples, coverage, fuzzing, stateful) with a
fixed seed; the coverage phase, which is the same list of boundary values whoever sends it, runs
once, as the administrator, whom no operation turns away. The least privileged roles run first, two
at a time, and the administrator last and alone, whose requests delete teams, memberships and models
the others read.
Settings and the two things the fuzzer is kept from doing are in tests/schemathesis.toml and
tests/fuzz_hooks.py. Every later endpoint is fuzzed here without anyone asking.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from governance.accounts.models import Scope
from governance.accounts.services import token_create
from governance.core.context import audit_context

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261201
# Examples per operation in the fuzzing and stateful phases. The coverage phase (every boundary value
# and every way to break each parameter: about 3,600 requests, deterministic) runs once, as the site
# administrator, who may reach every operation; every role runs fuzzing and stateful sequences.
ROLES = {"viewer": 4, "auditor": 4, "operator": 4, "reviewer": 4, "approver": 4, "author": 6, "admin": 6}
EVERY_PHASE = "examples,coverage,fuzzing,stateful"

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


def test_every_role_fuzzes_the_api_without_a_5xx_or_an_answer_off_schema(live_server, serving_settings, tmp_path):
    # (Nagle's algorithm is off on the live server's connections: tests/conftest.py. It cost this test six
    # of its seven and a half minutes.)
    # the demo deploys its approved versions on the two real MLServers of the serving suites
    call_command("seed_demo", stdout=io.StringIO(), stderr=io.StringIO())
    users = get_user_model().objects.in_bulk(list(ROLES), field_name="username")
    tokens = {}
    for username in ROLES:
        with audit_context(source="cli", actor=users[username]):
            # every scope but 'host', which no token may carry with another (and most roles may not hold)
            scopes = [scope for scope in Scope.values if scope != Scope.HOST]
            token, secret = token_create(actor=users[username], name="fuzz", scopes=scopes)
        tokens[username] = (token.pk, secret)
    run = partial(
        _schemathesis,
        live_server.url,
        _schema_file(live_server.url, tokens["admin"][1], tmp_path),
        own_ids=",".join(str(pk) for pk, _ in tokens.values()),
        cache=tmp_path / "cache",
    )

    def fuzz(username: str) -> subprocess.CompletedProcess:
        phases = EVERY_PHASE if username == "admin" else "examples,fuzzing,stateful"
        return run(tokens[username][1], examples=ROLES[username], phases=phases)

    # The least privileged roles two at a time (the server answers one while the other's fuzzer
    # generates), the administrator alone and last.
    others = [username for username in ROLES if username != "admin"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = dict(zip(others, pool.map(fuzz, others), strict=True))
    outputs["admin"] = fuzz("admin")

    failures, total = [], 0
    for username, output in outputs.items():
        generated = re.search(r"(\d+) generated", output.stdout)
        total += int(generated.group(1)) if generated else 0
        print(f"{username}: {generated.group(0) if generated else 'nothing generated'}")
        if output.returncode != 0 or not generated:
            found = output.stdout.split("= FAILURES =", 1)[-1].split("= WARNINGS =", 1)[0]
            failures.append(f"--- as {username} (rc {output.returncode}) ---\n{found[:30000]}{output.stderr[-3000:]}")
    print(f"schemathesis made {total} requests over {len(ROLES)} roles")
    assert not failures, "\n".join(failures)
    assert total > 1000, f"only {total} requests: the fuzzer reached too little of the API"


def _schema_file(base_url: str, secret: str, directory: Path) -> Path:
    """The schema, read once: drf-spectacular's first generation in a process is not thread-safe (two
    at once can fail with AttributeError, a 500 that leaves a fuzzer with nothing to run), and every
    role is served the same document."""
    request = urllib.request.Request(
        f"{base_url}/api/schema/?format=json", headers={"Authorization": f"Bearer {secret}"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        path = directory / "schema.json"
        path.write_bytes(response.read())
    return path


def _schemathesis(
    base_url: str, schema: Path, secret: str, *, examples: int, phases: str, own_ids: str, cache: Path
) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", str(schema),
        "--url", base_url,
        "--header", f"Authorization: Bearer {secret}",
        "--seed", str(SEED),
        "--max-examples", str(examples),
        "--phases", phases,
        "--workers", "1",
        "--no-color",
    ]  # fmt: skip
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        "FUZZ_OWN_TOKEN_IDS": own_ids,
        # schemathesis keeps requests to replay and operations to skip between runs (.schemathesis/ in
        # the working directory): this run's own, so no earlier run, and no other checkout, steers it
        "FUZZ_CACHE_DIR": str(cache),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
