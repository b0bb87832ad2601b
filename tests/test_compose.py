"""docker-compose.yml cannot run here (no Docker engine), so check what it would run."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from urllib.parse import urlparse

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
    assert "migrate" not in web  # the one-shot migrate service's business, as the schema owner
    assert _argv(services["migrate"])[:3] == ["python", "manage.py", "migrate"]
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


def _interpolated(value: str) -> str:
    """``${VAR:?message}`` as compose fills it in, the variable's value standing in as its lower-case name."""
    return re.sub(r"\$\{(\w+)[^}]*\}", lambda m: m[1].lower(), value)


def test_migrations_run_as_the_owner_and_the_app_as_a_role_that_owns_nothing(compose):
    services = compose["services"]
    postgres = services["postgres"]
    assert "./scripts/postgres-init:/docker-entrypoint-initdb.d:ro" in postgres["volumes"]
    [script] = sorted((ROOT / "scripts" / "postgres-init").glob("*.sh"))
    init = script.read_text()
    assert init.startswith("#!/bin/sh\n") and "\r" not in init
    roles = re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD :'(\w+)' ([A-Z ]+);", init)
    assert roles == [
        ("charter_owner", "owner_password", "NOSUPERUSER NOCREATEDB NOCREATEROLE"),
        ("charter_app", "app_password", "NOSUPERUSER NOCREATEDB NOCREATEROLE"),
    ]
    assert "CREATE DATABASE charter OWNER charter_owner;" in init
    assert 'owner_password="$CHARTER_OWNER_PASSWORD"' in init and 'app_password="$CHARTER_APP_PASSWORD"' in init
    pg_env = {k: _interpolated(v) for k, v in postgres["environment"].items()}
    assert postgres["healthcheck"]["test"][1].startswith("pg_isready -h 127.0.0.1 ")  # not the init server

    migrate = services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    owner = urlparse(_interpolated(migrate["environment"]["DATABASE_OWNER_URL"]))
    assert (owner.username, owner.password) == ("charter_owner", pg_env["CHARTER_OWNER_PASSWORD"])
    settings_source = (ROOT / "governance" / "settings.py").read_text()
    assert '"DATABASE_OWNER_URL"' in settings_source

    for name in ("migrate", "web", "worker", "beat", "gpu-worker"):
        env = services[name]["environment"]
        app = urlparse(_interpolated(env["DATABASE_URL"]))
        assert (app.username, app.password) == ("charter_app", pg_env["CHARTER_APP_PASSWORD"]), name
        assert (
            (app.hostname, app.port, app.path)
            == (owner.hostname, owner.port, owner.path)
            == ("postgres", 5432, "/charter")
        )
        if name != "migrate":
            # the processes that serve requests and run tasks never hold the owner's credentials
            assert not {"DATABASE_OWNER_URL", "MIGRATION_DATABASE_URL"} & set(env), name
            assert "CHARTER_OWNER_PASSWORD" not in str(services[name]), name
            assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_each_default_environment_has_its_mlserver_where_the_worker_looks(compose):
    """The worker reaches environment E's MLServer at CHARTER_MLSERVER_E_HOST on the settings' port, and
    writes its model repository where that server reads it (the shared var volume)."""
    from django.conf import settings

    services = compose["services"]
    env = services["worker"]["environment"]
    for name in ("staging", "production"):
        service = services[f"mlserver-{name}"]
        argv = _argv(service)
        importlib.import_module(argv[argv.index("-m") + 1])  # the module the container runs exists
        flag = dict(zip(argv[::1], argv[1::1], strict=False))
        assert flag["--name"] == name
        assert int(flag["--http-port"]) == settings.SERVING_LOCAL_PORTS[name]
        assert int(flag["--metrics-port"]) == settings.SERVING_LOCAL_PORTS[name] + 200
        assert flag["--dir"] == f"{env['CHARTER_VAR_DIR']}/serving/{name}"  # settings.SERVING_DIR/<name> there
        assert env[f"CHARTER_MLSERVER_{name.upper()}_HOST"] == f"mlserver-{name}"
        assert "charter-var:/app/var" in service["volumes"] and "charter-var:/app/var" in services["worker"]["volumes"]
