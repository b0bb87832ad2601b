"""``manage.py host_agent --name gpu-1 --api-url https://charter.example.com --token-file PATH``: run the
host agent (``workers.hosts.agent``) on this machine. See ``--help`` and the README's "Adding a GPU host"."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from workers.hosts.agent import AgentConfig, HostAgent, parse_labels

TOKEN_ENV = "CHARTER_HOST_TOKEN"
API_URL_ENV = "CHARTER_API_URL"


def _interval(text: str) -> float:
    value = float(text)
    if not 0.2 <= value <= 3600:
        raise ValueError(text)
    return value


class Command(BaseCommand):
    help = (
        "Register this machine as a compute host, send heartbeats with its GPUs' memory use and utilisation, "
        "and run a Celery worker (solo pool) on its queue host.<name>. Needs an API token with the 'host' scope, "
        f"from --token-file or the {TOKEN_ENV} environment variable."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="The host's name: lowercase letters, digits, hyphens.")
        parser.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                            help="A label to choose the host by, e.g. gpu=h100 (repeat for more).")  # fmt: skip
        parser.add_argument("--api-url", default=os.environ.get(API_URL_ENV, ""),
                            help=f"Charter's base URL, e.g. https://charter.example.com (or {API_URL_ENV}).")  # fmt: skip
        parser.add_argument("--token-file", type=Path, help=f"A file holding the host token (or {TOKEN_ENV}).")
        parser.add_argument("--heartbeat-seconds", type=_interval, default=15.0,
                            help="Seconds between heartbeats (0.2 to 3600; default 15).")  # fmt: skip
        parser.add_argument("--no-worker", action="store_true",
                            help="Register and send heartbeats only: run no Celery worker.")  # fmt: skip
        parser.add_argument("--stop-timeout", type=float, default=60.0,
                            help="Seconds the worker gets to finish its task on SIGTERM before it is killed.")  # fmt: skip

    def handle(self, *args, **options):
        api_url = options["api_url"].strip()
        if not api_url.startswith(("http://", "https://")):
            raise CommandError(
                f"Give Charter's URL with --api-url (or {API_URL_ENV}), e.g. https://charter.example.com."
            )
        token = self._token(options["token_file"])
        try:
            labels = parse_labels(options["label"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        config = AgentConfig(
            name=options["name"], api_url=api_url, token=token, labels=labels,
            heartbeat_seconds=options["heartbeat_seconds"], run_worker=not options["no_worker"],
            stop_timeout=options["stop_timeout"],
        )  # fmt: skip
        status = HostAgent(config).run()
        if status:
            sys.exit(status)

    def _token(self, path: Path | None) -> str:
        if path is not None:
            try:
                mode = path.stat().st_mode
                token = path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CommandError(f"Cannot read the token file {path}: {exc.strerror}.") from None
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                self.stderr.write(f"Warning: {path} can be read by other users; chmod 600 it.")
        else:
            token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise CommandError(f"No host token: give --token-file PATH or set {TOKEN_ENV}.")
        return token
