#!/usr/bin/env python
"""CPU per API request in-process: the registry API's two CI calls through the whole WSGI stack.

Prints figures; it is not a test. No server, no sockets on the HTTP side and no client threads:
Django's WSGI handler is called directly (every middleware, DRF, token authentication, the real
PostgreSQL and broker), so the figure is the server's own CPU per request, steadier on a noisy
machine than a load test. Compare two checkouts by running it in each, one after the other.

- register: ``POST /api/v1/versions/`` (multipart, a fresh 256-byte artifact) with a write token;
- list: ``GET /api/v1/versions/?model=<id>&page_size=50`` on a model with at least 50 versions.

Usage (wipes a database whose name contains "bench")::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5544/charter_bench
    export CELERY_BROKER_URL=redis://127.0.0.1:6390/3      # optional; the published messages are purged
    .venv/bin/python bench/api_inprocess.py --requests 400
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import heading, median, purge_broker, setup_django  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="timed requests per kind, in 4 rounds")
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--force", action="store_true", help="allow a database whose name lacks 'bench'")
    return parser.parse_args()


def main():
    args = parse_args()
    setup_django(force=args.force)
    from api_concurrency import charter_seed, multipart
    from django.core.handlers.wsgi import WSGIHandler

    setup = charter_seed(argparse.Namespace(models=args.models, big=0))
    handler = WSGIHandler()
    rng = random.Random(1)

    def call(method: str, path: str, body: bytes = b"", content_type: str = "", query: str = "") -> None:
        environ = {
            "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
            "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": content_type, "wsgi.errors": sys.stderr,
            "HTTP_AUTHORIZATION": f"Bearer {setup.secret}", "REMOTE_ADDR": "127.0.0.1",
        }  # fmt: skip
        status = []
        response = handler(environ, lambda s, headers, *exc: status.append(s))
        b"".join(response)
        response.close()
        if not status[0].startswith("2"):
            raise SystemExit(f"{method} {path}?{query} answered {status[0]}")

    def register():
        body, content_type = multipart(
            {"model": str(rng.choice(setup.model_ids)), "description": "bench/api_inprocess.py"},
            {"artifact": ("model.joblib", rng.randbytes(256))},
        )
        call("POST", "/api/v1/versions/", body, content_type)

    def list_newest():
        call("GET", "/api/v1/versions/", query=f"model={rng.choice(setup.model_ids)}&page_size=50")

    try:
        for _ in range(60 * args.models):  # every model gets its 50 versions and more, and everything is warm
            register()
        for _ in range(50):
            list_newest()
        heading(f"CPU per request, in-process ({args.requests} per kind, in 4 rounds)")
        for kind, fn in (("register", register), ("list of 50", list_newest)):
            rounds = []
            for _ in range(4):
                started = time.process_time()
                for _ in range(args.requests // 4):
                    fn()
                rounds.append((time.process_time() - started) / (args.requests // 4) * 1000)
            print(f"  {kind:<12} best {min(rounds):.2f} ms, median {median(rounds):.2f} ms of CPU")
    finally:
        purge_broker()


if __name__ == "__main__":
    main()
