"""docker-compose.yml cannot run here (no Docker engine), so check what it would run."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _argv(service: dict) -> list[str]:
    command = service["command"]
    if isinstance(command, str):
        return command.split()
    if command[:2] == ["sh", "-c"]:
        return command[2].split()
    return command


def test_the_stack_has_its_services(compose):
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])
    assert compose["services"]["gpu-worker"]["profiles"] == ["gpu"]


def test_app_services_run_commands_that_exist_here(compose):
    from governance.celery import app as celery_app

    services = compose["services"]
    web = " ".join(_argv(services["web"]))
    wsgi = re.search(r"gunicorn (\S+)", web).group(1)
    assert callable(importlib.import_module(wsgi.replace(":application", "")).application)
    assert "manage.py migrate" in web
    for name in ("worker", "beat", "gpu-worker"):
        argv = _argv(services[name])
        assert argv[:3] == ["celery", "-A", "governance"], name
        assert argv[3] in ("worker", "beat"), name
    queues = _argv(services["worker"])[_argv(services["worker"]).index("-Q") + 1].split(",")
    assert "default" in queues  # where workers.artifacts tasks are routed
    assert celery_app.conf.task_routes["workers.artifacts.*"]["queue"] in queues


def test_app_services_share_configuration_the_settings_read(compose):
    settings_source = (ROOT / "governance" / "settings.py").read_text()
    for name in ("web", "worker", "beat"):
        env = compose["services"][name]["environment"]
        for key in ("DATABASE_URL", "CELERY_BROKER_URL", "SECRET_KEY"):
            assert key in env, f"{name} lacks {key}"
            assert f'"{key}"' in settings_source, f"settings never read {key}"
        assert env["DATABASE_URL"].startswith("postgres://") and env["CELERY_BROKER_URL"].startswith("redis://")
    assert (ROOT / compose["services"]["web"]["build"]["dockerfile"]).is_file()
