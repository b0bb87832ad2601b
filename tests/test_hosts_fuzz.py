"""Schemathesis on the host endpoints with the token they are for (issue 15): the API-wide fuzz test
(tests/test_api_fuzz.py) holds no host token, since a ``host`` token carries no other scope, so there every
host write is a 403. Here a host token and a token with every other scope fuzz ``/api/v1/hosts/``: no
5xx, no answer the schema does not describe.

"Schema-valid but refused" says nothing for the two writes: OpenAPI 3.0 cannot state a label key's
pattern, that a GPU index appears once, or that a heartbeat's GPU is one the host registered, so the
positive-data check is off for them (every other check runs).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from governance.accounts.models import Scope
from governance.accounts.services import token_create
from governance.core.context import audit_context
from tests.test_api_fuzz import ROOT, SEED, _schema_file

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

HOST_WRITES = """
[[operations]]
# label keys, unique GPU indexes and a heartbeat's GPUs being the host's are rules OpenAPI 3.0 cannot state
include-path-regex = "^/api/v1/hosts/"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""


def test_the_host_endpoints_fuzzed_with_a_host_token_and_without_one(live_server, users, tmp_path):
    with audit_context(source="cli", actor=users.operator):
        host_token, host = token_create(actor=users.operator, name="fuzz host", scopes=[Scope.HOST])
        other_token, other = token_create(
            actor=users.operator, name="fuzz", scopes=[s for s in Scope.values if s != Scope.HOST]
        )
    config = tmp_path / "schemathesis.toml"
    config.write_text((ROOT / "tests" / "schemathesis.toml").read_text() + HOST_WRITES)
    schema = _schema_file(live_server.url, other, tmp_path)
    failures = []
    for secret, examples in ((host, 40), (other, 15)):
        output = _fuzz(live_server.url, schema, config, secret, examples=examples, cache=tmp_path / "cache",
                       own_ids=f"{host_token.pk},{other_token.pk}")  # fmt: skip
        generated = re.search(r"(\d+) generated", output.stdout)
        if output.returncode != 0 or not generated or int(generated.group(1)) < 200:
            failures.append(output.stdout[-20000:] + output.stderr[-3000:])
    assert not failures, "\n".join(failures)


def _fuzz(base_url: str, schema: Path, config: Path, secret: str, *, examples: int, cache: Path, own_ids: str):
    """tests/test_api_fuzz.py's schemathesis run, on the host operations only."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
        "run", str(schema), "--url", base_url, "--header", f"Authorization: Bearer {secret}",
        "--include-path-regex", "^/api/v1/hosts/", "--seed", str(SEED), "--max-examples", str(examples),
        "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1", "--no-color",
    ]  # fmt: skip
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks", "FUZZ_OWN_TOKEN_IDS": own_ids,
           "FUZZ_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
