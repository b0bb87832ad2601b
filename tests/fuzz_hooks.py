"""Schemathesis hooks for tests/test_api_fuzz.py (loaded with SCHEMATHESIS_HOOKS=tests.fuzz_hooks).

Two things a fuzzer would otherwise do that say nothing about the API:

- invent pagination cursors. A cursor is opaque: the only valid ones are those a list hands out
  in ``next`` and ``previous``, which no schema can describe, so every invented one is a correct
  400 ``invalid_cursor`` that the positive-data check would count as a wrongly refused request.
  Edited and corrupted cursors have their own tests (tests/test_bad_input_500s.py).
- revoke the very tokens it runs with, after which every request is a (documented) 401 and the
  rest of the run tests nothing. Other tokens, the ones it creates included, it may revoke.
"""

from __future__ import annotations

import os

import schemathesis

OWN_TOKEN_IDS = frozenset(int(i) for i in os.environ.get("FUZZ_OWN_TOKEN_IDS", "").split(",") if i)


@schemathesis.hook
def before_load_schema(ctx, raw_schema):
    for operations in raw_schema.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict) and "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if p.get("name") != "cursor"]


@schemathesis.hook
def filter_path_parameters(ctx, path_parameters):
    if ctx.operation is not None and ctx.operation.path.startswith("/api/v1/tokens/{id}/revoke"):
        return (path_parameters or {}).get("id") not in OWN_TOKEN_IDS
    return True
