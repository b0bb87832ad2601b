"""Shared fixtures: a team with one user per role, an outsider, API clients and factories.

Tests run on the PostgreSQL and Redis that ``scripts/test.sh`` starts (``DATABASE_URL``,
``CELERY_BROKER_URL``).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test.testcases import QuietWSGIRequestHandler
from rest_framework.test import APIClient

from governance.accounts import services as accounts
from governance.accounts.models import Membership, Role, Team
from governance.core.context import audit_context
from governance.registry import services as registry

# The live server (pytest-django's ``live_server``, Django's LiveServerThread) writes each response in
# several small sends; with Nagle's algorithm on, on a kept-alive connection the later ones wait for the
# client's delayed ACK: about 40 ms a request. Every browser and fuzz test paid it; no user does.
QuietWSGIRequestHandler.disable_nagle_algorithm = True

User = get_user_model()
PASSWORD = "correct-horse-battery"


# --- two database roles (governance/audit/roles.py) ------------------------------------------------
# With DATABASE_OWNER_URL set (scripts/test.sh sets it), the test database is created, migrated and
# dropped as the owner, and the tests run as the application role, with its privileges and no more.


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    from governance.audit import roles

    roles.connect_as("owner")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    from governance.audit import roles

    roles.connect_as("app")
    yield
    roles.connect_as("owner")


@pytest.fixture(autouse=True)
def _audit_checkpoints(tmp_path, settings):
    """Each test its own checkpoint storage: verification reads every exported checkpoint back."""
    settings.AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"


@pytest.fixture(autouse=True)
def _artifact_storage(tmp_path, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        # Static files by their own names: the suite does not run collectstatic, which the manifest
        # storage of settings.py needs (tests/test_static_delivery.py checks that one for real).
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
        "artifacts": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "artifacts"},
        },
        "evaluation_data": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "evaluation-data"},
        },
    }
    from django.core.files.storage import storages

    for alias in ("artifacts", "evaluation_data"):
        storages._storages.pop(alias, None)
    yield
    for alias in ("artifacts", "evaluation_data"):
        storages._storages.pop(alias, None)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def _team(name: str, superuser) -> Team:
    with audit_context(source="cli", actor=superuser):
        return accounts.team_create(actor=superuser, name=name)


@pytest.fixture
def team(superuser):
    return _team("Credit Risk", superuser)


@pytest.fixture
def other_team(superuser):
    return _team("Marketing", superuser)


@pytest.fixture
def users(team, other_team, superuser):
    """One user per role in ``team``; ``outsider`` is an author in ``other_team`` only."""
    made = {}
    for role in Role.values:
        user = User.objects.create_user(role, f"{role}@example.com", PASSWORD)
        Membership.objects.create(user=user, team=team, role=role)
        made[role] = user
    outsider = User.objects.create_user("outsider", "outsider@example.com", PASSWORD)
    Membership.objects.create(user=outsider, team=other_team, role=Role.AUTHOR)
    made["outsider"] = outsider
    made["superuser"] = superuser
    return SimpleNamespace(**made)


class Api:
    """An APIClient per user; ``as_user(u)`` logs in with a session."""

    def as_user(self, user) -> APIClient:
        client = APIClient()
        if user is not None:
            with audit_context(source="cli", actor=user):  # force_login fires the audited login signal
                client.force_login(user)
        return client

    def with_token(self, secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client


@pytest.fixture
def api():
    return Api()


def make_artifact(content: bytes | None = None, name: str = "model.joblib") -> SimpleUploadedFile:
    if content is None:
        content = b"\x80\x04" + os.urandom(64)
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def trained_artifact() -> bytes:
    """A real, small scikit-learn model serialised with joblib."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    buf = io.BytesIO()
    joblib.dump(LogisticRegression(max_iter=300).fit(X, y), buf)
    return buf.getvalue()


@pytest.fixture
def make_model(team, users):
    def make(name: str = "credit-scoring", *, owner_team: Team | None = None, actor=None, **kw):
        actor = actor or users.author
        with audit_context(source="cli", actor=actor):
            return registry.model_create(actor=actor, team=owner_team or team, name=name, **kw)

    return make


@pytest.fixture
def make_version(users):
    def make(model, *, actor=None, content: bytes | None = None, **kw):
        actor = actor or users.author
        with audit_context(source="cli", actor=actor):
            return registry.version_create(actor=actor, model=model, artifact=make_artifact(content), **kw)

    return make


@pytest.fixture
def model(make_model):
    return make_model()


@pytest.fixture
def version(model, make_version):
    return make_version(model, metrics={"accuracy": 0.9}, hyperparameters={"C": 1.0})


def move(version, *stages, actor):
    """Walk a version through stages with the given actor (who must hold the needed roles).

    Steps that belong to the approval workflow (into and out of review) are taken the way that
    workflow takes them, without a request: a factory for the state, not a test of approvals. The
    steps into and out of "deployed" likewise, without a deployment (the serving suite deploys for real).
    """
    from django.db import transaction

    from governance.registry.models import TRANSITIONS

    with audit_context(source="cli", actor=actor):
        for stage in stages:
            step = TRANSITIONS[version.stage].get(stage)
            if step is not None and step.by_review:
                with transaction.atomic():
                    version = registry.version_transition_by_review(actor=actor, version=version, to=stage)
            elif step is not None and step.by_serving:  # the stage alone; no deployment behind it
                with transaction.atomic():
                    version = registry.version_transition_by_serving(actor=actor, version=version, to=stage)
            else:
                version = registry.version_transition(actor=actor, version=version, to=stage)
    return version


# --- Fixtures and helpers of the API and audit suites (appended) -------------------------------


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Cheap password hashing for throwaway users: the default PBKDF2 costs about 0.3 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def governed_state() -> dict:
    """Every governed row, to compare before and after a refused request.

    ``permission.denied`` and ``<action>.refused`` events are left out: a refused write records them
    on purpose. A token's ``last_used_at`` is left out: authenticating with it is not a governed write.
    """
    from governance.accounts.models import ApiToken
    from governance.audit.models import AuditEvent
    from governance.registry.models import ModelCard, ModelVersion, RegisteredModel

    token_fields = [f.name for f in ApiToken._meta.concrete_fields if f.name != "last_used_at"]
    return {
        "teams": list(Team.objects.order_by("pk").values()),
        "memberships": list(Membership.objects.order_by("pk").values()),
        "tokens": list(ApiToken.objects.order_by("pk").values(*token_fields)),
        "models": list(RegisteredModel.objects.order_by("pk").values()),
        "owners": list(RegisteredModel.owners.through.objects.order_by("pk").values()),
        "versions": list(ModelVersion.objects.order_by("pk").values()),
        "cards": list(ModelCard.objects.order_by("pk").values()),
        "events": list(
            AuditEvent.objects.exclude(action="permission.denied")
            .exclude(action__endswith=".refused")
            .order_by("seq")
            .values_list("seq", "hash")
        ),
    }


def assert_error(response, status: int, code: str | None = None) -> dict:
    """An API error: the status, a JSON body with ``code`` and ``detail``, and the code when given."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body.get("code"), str) and body["code"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def api_world(users, team, other_team, make_model, make_version):
    """A small registry to act on: a model with two versions (v2 has a card), a model without
    versions, a model of the other team, a user who belongs to no team, and the author's read token."""
    model = make_model("credit-scoring", use_case="retail credit")
    empty_model = make_model("churn")
    foreign_model = make_model("campaign-uplift", owner_team=other_team, actor=users.outsider)
    v1 = make_version(model, metrics={"accuracy": 0.9}, hyperparameters={"C": 1.0}, tags=["baseline"])
    v2 = make_version(model, metrics={"accuracy": 0.93}, hyperparameters={"C": 0.5}, tags=["tuned"])
    foreign_version = make_version(foreign_model, actor=users.outsider)
    with audit_context(source="cli", actor=users.author):
        card = registry.card_save(
            actor=users.author,
            version=v2,
            sections={"model_details": "Gradient boosted trees trained by the credit risk team in 2024."},
        )
        token, secret = accounts.token_create(actor=users.author, name="ci-read", scopes=["read"])
    newbie = User.objects.create_user("newbie", "newbie@example.com", PASSWORD)
    from governance.audit.models import AuditEvent

    return SimpleNamespace(
        team=team,
        other_team=other_team,
        model=model,
        empty_model=empty_model,
        foreign_model=foreign_model,
        v1=v1,
        v2=v2,
        foreign_version=foreign_version,
        card=card,
        token=token,
        secret=secret,
        newbie=newbie,
        viewer_membership=Membership.objects.get(user=users.viewer, team=team),
        team_event=AuditEvent.objects.get(action="model.create", object_id=str(model.pk)),
        foreign_event=AuditEvent.objects.get(action="model.create", object_id=str(foreign_model.pk)),
    )


def signed_in(user):
    """A browser client signed in as the user (session, as the UI uses)."""
    from django.test import Client

    client = Client()
    with audit_context(source="cli", actor=user):  # force_login fires the audited login signal
        client.force_login(user)
    return client


@pytest.fixture
def login():
    return signed_in


# --- a real Celery worker process ----------------------------------------------------------------


@contextlib.contextmanager
def celery_worker(*, queues: str = "default", media_root=None, **env_overrides):
    """A real Celery worker (solo pool) on the test database and Redis, stopped on exit.

    It reads the same artifact and evaluation-data files as the test when ``media_root`` is the
    parent of the test's storage folders (``tmp_path``).
    """
    import sys
    from pathlib import Path

    from django.conf import settings
    from django.db import connection

    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://") or connection.vendor != "postgresql":
        pytest.fail("A worker test needs PostgreSQL and Redis: run it through scripts/test.sh.")
    db = connection.settings_dict
    env = dict(
        os.environ,
        DATABASE_URL=f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        CELERY_BROKER_URL=broker,
        SECRET_KEY=settings.SECRET_KEY,
        **({"MEDIA_ROOT": str(media_root)} if media_root is not None else {}),
        **{k: str(v) for k, v in env_overrides.items()},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "governance", "worker", "-Q", queues, "--pool", "solo",
         "--without-heartbeat", "--without-mingle", "--without-gossip", "--loglevel", "INFO"],
        cwd=Path(__file__).resolve().parent.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_process_group(proc)


@contextlib.contextmanager
def celery_beat(tmp_path, **env):
    """Celery beat, as deployed: its own process, which outlives the workers; ``env`` overrides the
    environment (``TASK_LEASE_*`` to make the lease sweep quick). Its log goes to ``tmp_path/beat.log``."""
    import sys
    from pathlib import Path

    log = open(tmp_path / "beat.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "governance", "beat", "-s", str(tmp_path / "beat-schedule"),
         "--loglevel", "INFO"],
        cwd=Path(__file__).resolve().parent.parent, env={**os.environ, **{k: str(v) for k, v in env.items()}},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        stop_process_group(proc)
        log.close()


def stop_process_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM to a process started with ``start_new_session``, and its children; SIGKILL after ``timeout``."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1):
    """Poll until ``predicate()`` is truthy; its last value (falsy on timeout)."""
    import time

    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


from tests.serving_support import fake_k8s, mlservers, serving_settings  # noqa: E402, F401 (fixtures of the serving suites)


@pytest.fixture(autouse=True)
def _default_policies_after_a_flush(request):
    """Transactional tests (live server, real workers) run last and flush the database after each
        one, taking the site-wide default policies and the regulatory frameworks that data migrations created
    with it: put them back, as
        on a fresh database, so such a test does not depend on which one ran before it."""
    marker = request.node.get_closest_marker("django_db")
    transactional = (marker is not None and marker.kwargs.get("transaction")) or {
        "transactional_db",
        "live_server",
    } & set(request.fixturenames)
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    from importlib import import_module

    from django.apps import apps

    import_module("governance.approvals.migrations.0002_default_policies").create(apps, None)
    import_module("governance.compliance.migrations.0002_frameworks").create(apps, None)
    import_module("governance.serving.migrations.0002_default_environments").create(apps, None)
