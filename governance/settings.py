"""Charter settings. Everything a deployment changes comes from the environment.

Defaults give a zero-setup install: SQLite and a filesystem Celery broker under ``var/``.
Production and the test suite point ``DATABASE_URL`` at PostgreSQL and
``CELERY_BROKER_URL`` at Redis.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHARTER_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, str(default)).lower() in {"1", "true", "yes", "on"}


def _env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate ("600/minute"); "off" (or "none", "0") disables that throttle."""
    value = os.environ.get(name, default).strip()
    if value.lower() in {"", "off", "none", "0"}:
        return None
    number, _, period = value.partition("/")
    if not (number.isdigit() and int(number) > 0 and period in {"second", "minute", "hour", "day"}):
        raise ImproperlyConfigured(
            f"{name} is a number of requests per second, minute, hour or day (60000/minute), or off."
        )
    return value


def _secret_key() -> str:
    if key := os.environ.get("SECRET_KEY"):
        return key
    # Generated once and kept, so sessions and signed audit checkpoints survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "csp",
    "governance.core",
    "governance.accounts",
    "governance.audit",
    "governance.registry",
    "governance.approvals",
    "governance.notifications",
    "governance.evaluations",
    "governance.compliance",
    "governance.serving",
    "governance.hosts",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "csp.middleware.CSPMiddleware",
    # Pages and API responses are gzipped when the client asks (bench/pages.py: audit log 151 -> 18 KiB);
    # streamed responses (artifact downloads) are left as they are.
    # Static files never get here: WhiteNoise above answers them with the copies collectstatic
    # compressed. BREACH (guessing a secret on a compressed page that also reflects attacker text,
    # from response sizes) is mitigated: Django masks the CSRF token afresh in every response, and
    # this middleware (Django >= 4.2) pads every response with 0-99 random bytes ("Heal the
    # Breach"), which drowns the one-byte length differences the attack measures.
    "governance.core.middleware.GZipPagesMiddleware",
    "governance.core.middleware.RequestIdMiddleware",
    # Before anything reads a body (the CSRF check parses every form post): an upload over its limit
    # is refused from its Content-Length, or cut off as it streams (governance/core/uploads.py)
    "governance.core.uploads.UploadLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "governance.core.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "governance.core.middleware.TransientDatabaseErrorMiddleware",
    # last, as django-axes asks: turns a sign-in refused by the lockout into the lockout page
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "governance.urls"
WSGI_APPLICATION = "governance.wsgi.application"
ASGI_APPLICATION = "governance.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "governance.accounts.context_processors.charter",
                "governance.notifications.context_processors.notifications",
                "governance.approvals.context_processors.reviews",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'charter.sqlite3'}"),
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and _env_bool(
    "DATABASE_PREPARED_STATEMENTS", True
):
    # core.sql's statements (token, roles, model lookup, version insert, audit append) are prepared
    # once per connection and planned once: re-planning them on every call was a third of their
    # server time. Only they ask for preparation (the threshold keeps Django's own cursors out);
    # set DATABASE_PREPARED_STATEMENTS=0 behind a pooler that cannot carry prepared statements.
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    _options.setdefault("prepare_threshold", 1_000_000)
    _options["options"] = f"{_options.get('options', '')} -c plan_cache_mode=force_generic_plan".strip()
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded default: one writer at a time, so wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

# Least privilege on PostgreSQL (governance/audit/roles.py). The application connects as DATABASE_URL's
# role, which may only read and append to the audit tables; `manage.py migrate` (and `flush`) connect as
# the schema's owner, DATABASE_OWNER_URL (or MIGRATION_DATABASE_URL): its role, password, host and port,
# on DATABASE_URL's database. Give that URL to the migration step only. After every migrate the owner
# grants the application role its privileges. Unset, one role does both (`manage.py check --database
# default` warns). SQLite has no roles: the owner URL is ignored there.
DATABASE_OWNER = None
_owner_url = os.environ.get("DATABASE_OWNER_URL") or os.environ.get("MIGRATION_DATABASE_URL") or ""
if _owner_url and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _owner = dj_database_url.parse(_owner_url)
    if _owner["ENGINE"] != DATABASES["default"]["ENGINE"]:
        raise ImproperlyConfigured("DATABASE_OWNER_URL must be a PostgreSQL URL, like DATABASE_URL.")
    DATABASE_OWNER = {key: _owner[key] for key in ("USER", "PASSWORD", "HOST", "PORT")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# django-axes first: it refuses a locked-out username + address before any password is checked
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "staticfiles"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
MEDIA_URL = "media/"

# Artifacts live in the "artifacts" storage: local files by default, S3 when
# ARTIFACT_STORAGE=s3 (django-storages, configured with the usual AWS_* variables).
_artifact_backend = {
    "local": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT / "artifacts"},
    },
    "s3": {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("ARTIFACT_S3_BUCKET", ""),
            "location": os.environ.get("ARTIFACT_S3_PREFIX", "artifacts"),
            "file_overwrite": False,
        },
    },
}[os.environ.get("ARTIFACT_STORAGE", "local")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "artifacts": _artifact_backend,
    # the worker reads these files: on several hosts, MEDIA_ROOT must be shared storage
    "evaluation_data": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT / "evaluation-data"},
    },
    # collectstatic (scripts/run.sh and the Dockerfile run it) writes every file under a content-
    # hashed name (vendor/plotly-charter.min.<hash>.js) with a gzip copy, and a manifest that
    # {% static %} reads; WhiteNoise serves the hashed names with "max-age=315360000, public,
    # immutable", so a browser downloads each version of a file once. Pages cannot render without
    # the manifest: the test suite, which does not collect, swaps in the plain storage
    # (tests/conftest.py), and tests/test_static_delivery.py checks this one for real.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
ARTIFACT_MAX_BYTES = int(os.environ.get("ARTIFACT_MAX_BYTES", str(512 * 1024 * 1024)))
# Evaluation data uploaded with a run request; deleted when the run ends unless retained
EVALUATION_DATA_MAX_BYTES = int(os.environ.get("EVALUATION_DATA_MAX_BYTES", str(200 * 1024 * 1024)))
EVALUATION_MAX_ROWS = int(os.environ.get("EVALUATION_MAX_ROWS", "2000000"))
# A sensitive feature with more distinct values is refused (each value would be stored as a group
# label); the worker reads the same variable (workers/engines/runner.py).
EVALUATION_MAX_SENSITIVE_GROUPS = int(os.environ.get("EVALUATION_MAX_SENSITIVE_GROUPS", "50"))
# A stored result names a category value, a group or a quantile only when at least this many rows hold it.
EVALUATION_MIN_COUNT = int(os.environ.get("EVALUATION_MIN_COUNT", "5"))
EVALUATION_TIME_LIMIT_SECONDS = int(os.environ.get("EVALUATION_TIME_LIMIT_SECONDS", "3600"))
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The first handler counts file bytes and stops a file at its route's limit (governance/core/uploads.py)
FILE_UPLOAD_HANDLERS = [
    "governance.core.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.accounts.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "governance.accounts.drf.TokenScopePermission",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "governance.core.filters.FilterBackend",  # strict ids and booleans
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "governance.core.pagination.PagePagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "governance.core.errors.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    # JSON bodies only (refusing JSON nested too deep or that jsonb cannot store); the two uploads,
    # registering a version and requesting an evaluation, take multipart (governance/core/api.py)
    "DEFAULT_PARSER_CLASSES": ["governance.core.jsoninput.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # 429 with Retry-After past a rate; counted in the default cache (governance/core/throttling.py)
    "DEFAULT_THROTTLE_CLASSES": [
        "governance.core.throttling.TokenRateThrottle",
        "governance.core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "token": _env_rate("API_THROTTLE_TOKEN_RATE", "60000/minute"),
        "user": _env_rate("API_THROTTLE_USER_RATE", "120000/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Charter API",
    "DESCRIPTION": "Model deployment governance: registry, model cards, lifecycle and a verifiable audit log.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "StageEnum": "governance.registry.models.Stage",
        "BackendKindEnum": "governance.serving.models.BackendKind",
        "ActionKindEnum": "governance.serving.models.ActionKind",
        "ActionStatusEnum": "governance.serving.models.ActionStatus",
        "DeploymentStateEnum": "governance.serving.models.DeploymentState",
        "RevisionStateEnum": "governance.approvals.models.RevisionState",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "governance.core.schema.document_every_refusal",
    ],
}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
if CELERY_BROKER_URL == "filesystem://":
    _queue_dir = VAR_DIR / "broker"
    for sub in ("out", "processed", "control"):
        (_queue_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "out"),
        "data_folder_out": str(_queue_dir / "out"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
else:
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        CELERY_BROKER_TRANSPORT = "governance.broker:Transport"  # kombu's, sharing one client per channel
    # How long a message a worker took and never acknowledged waits before it is delivered again: the
    # recovery, after a whole worker died, of the tasks without a lease. Evaluation runs recover through
    # their lease (below), and refuse a second concurrent execution, so this need not outlast them. Keep
    # it above the longest unleased task (artifact inspection: 600 s) and the longest retry wait
    # (webhooks: 480 s by default): such a message would be delivered again while it still runs or waits.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "900"))}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ALWAYS_EAGER = _env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Long-running task records (evaluation runs) hold a lease their worker renews while it works
# (governance/core/leases.py). Beat's `leases-recover` re-queues a record whose lease ran out (its worker
# died), or fails it with `worker_lost` once it has had TASK_LEASE_MAX_ATTEMPTS starts: a crash is noticed
# within TASK_LEASE_SECONDS + TASK_LEASE_SWEEP_SECONDS, and costs the work of the attempt it interrupted.
# Serving. The default environments (staging, production) run on local MLServers that the run command
# starts (``workers/serving/mlserver_process.py``): HTTP on these ports, gRPC 100 and metrics 200 above,
# each with its model repository under SERVING_DIR/<environment>. Other backends are rows an admin adds.
SERVING_DIR = Path(os.environ.get("CHARTER_SERVING_DIR", VAR_DIR / "serving"))
SERVING_LOCAL_PORTS = {
    "staging": int(os.environ.get("CHARTER_MLSERVER_STAGING_PORT", "8181")),
    "production": int(os.environ.get("CHARTER_MLSERVER_PRODUCTION_PORT", "8182")),
}
# where the worker reaches them (compose runs each in its own container)
SERVING_LOCAL_HOSTS = {
    "staging": os.environ.get("CHARTER_MLSERVER_STAGING_HOST", "127.0.0.1"),
    "production": os.environ.get("CHARTER_MLSERVER_PRODUCTION_HOST", "127.0.0.1"),
}
# Beat's `serving-reconcile` (workers/deploy.py) compares what each environment's backend has loaded with
# what Charter says is live there, every SERVING_RECONCILE_SECONDS, and reports a difference once (an audit
# event `serving.drift` and a notification), and when it is gone (`serving.drift.resolved`).
SERVING_RECONCILE_SECONDS = float(os.environ.get("SERVING_RECONCILE_SECONDS", "300"))
if SERVING_RECONCILE_SECONDS < 1:
    raise ImproperlyConfigured("SERVING_RECONCILE_SECONDS is at least 1.")
# Beat's `serving-watch` reads each environment's request figures every SERVING_WATCH_SECONDS: they show on
# the serving pages, and a canary that breached its environment's health policy is rolled back (or one that
# met it over the observation window promoted, where the environment says so).
SERVING_WATCH_SECONDS = float(os.environ.get("SERVING_WATCH_SECONDS", "30"))
if SERVING_WATCH_SECONDS < 1:
    raise ImproperlyConfigured("SERVING_WATCH_SECONDS is at least 1.")

# Compute hosts (governance/hosts): online up to HOST_STALE_SECONDS after the host agent's last heartbeat,
# stale up to HOST_OFFLINE_SECONDS, offline after that. The agent beats every 15 s by default.
HOST_STALE_SECONDS = float(os.environ.get("HOST_STALE_SECONDS", "90"))
HOST_OFFLINE_SECONDS = float(os.environ.get("HOST_OFFLINE_SECONDS", "300"))
if not 1 <= HOST_STALE_SECONDS < HOST_OFFLINE_SECONDS:
    raise ImproperlyConfigured("HOST_STALE_SECONDS is at least 1 and less than HOST_OFFLINE_SECONDS.")

TASK_LEASE_SECONDS = float(os.environ.get("TASK_LEASE_SECONDS", "60"))
TASK_LEASE_SWEEP_SECONDS = float(os.environ.get("TASK_LEASE_SWEEP_SECONDS", "30"))
TASK_LEASE_MAX_ATTEMPTS = int(os.environ.get("TASK_LEASE_MAX_ATTEMPTS", "3"))
if TASK_LEASE_SECONDS < 1 or TASK_LEASE_SWEEP_SECONDS < 1 or TASK_LEASE_MAX_ATTEMPTS < 1:
    raise ImproperlyConfigured(
        "TASK_LEASE_SECONDS, TASK_LEASE_SWEEP_SECONDS and TASK_LEASE_MAX_ATTEMPTS are at least 1."
    )

# Signed checkpoints of the audit chain head live outside the database, and `audit_verify` reads them
# back: a directory (default), or an S3 bucket (AUDIT_CHECKPOINT_STORAGE=s3, django-storages + boto3)
# with Object Lock retention so that nobody can delete or rewrite them.
AUDIT_CHECKPOINT_DIR = Path(os.environ.get("AUDIT_CHECKPOINT_DIR", VAR_DIR / "audit-checkpoints"))
AUDIT_CHECKPOINT_STORAGE = os.environ.get("AUDIT_CHECKPOINT_STORAGE", "local")
if AUDIT_CHECKPOINT_STORAGE == "s3":
    STORAGES["audit_checkpoints"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ.get("AUDIT_CHECKPOINT_S3_BUCKET", ""),
            "location": os.environ.get("AUDIT_CHECKPOINT_S3_PREFIX", "audit-checkpoints"),
            "file_overwrite": False,
        },
    }
elif AUDIT_CHECKPOINT_STORAGE != "local":
    raise ImproperlyConfigured("AUDIT_CHECKPOINT_STORAGE is 'local' or 's3'.")
# The Ed25519 key that signs checkpoints; the database never sees it. AUDIT_SIGNING_KEY holds the PEM
# itself, else AUDIT_SIGNING_KEY_FILE names it; with neither, a key is generated once into
# var/audit_signing_key.pem (like SECRET_KEY). Web and worker need it; the migration step does not.
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY", "")
AUDIT_SIGNING_KEY_FILE = os.environ.get("AUDIT_SIGNING_KEY_FILE", "")
# Checkpoints written before Ed25519 (HMAC-SHA256, kept readable): their key, derived from SECRET_KEY unless set
AUDIT_CHECKPOINT_KEY = os.environ.get("AUDIT_CHECKPOINT_KEY", "")

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "charter@localhost")
SITE_URL = os.environ.get("SITE_URL", "")  # makes the links in notification emails absolute

# Outgoing webhooks: one attempt's timeout, and retries with exponential backoff (base * 2**(n-1))
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "5"))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "6"))
WEBHOOK_RETRY_BASE_SECONDS = float(os.environ.get("WEBHOOK_RETRY_BASE_SECONDS", "30"))
# Receivers on loopback or private networks are refused unless this is set (on-premise installs)
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = _env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", False)
# Approvals expiring within this many days are announced once (daily beat task)
APPROVAL_EXPIRY_NOTICE_DAYS = int(os.environ.get("APPROVAL_EXPIRY_NOTICE_DAYS", "14"))


def _env_days(name: str) -> int:
    """A retention period in whole days; 0 (the default) keeps forever."""
    value = os.environ.get(name, "0").strip() or "0"
    if not (value.isascii() and value.isdigit()):
        raise ImproperlyConfigured(f"{name} is a number of days (0 keeps forever).")
    return int(value)


# Retention (governance/compliance/services.py, the daily beat task `retention-purge`). An evaluation's
# stored result and figures are deleted EVALUATION_RESULT_RETENTION_DAYS after the run ended (the run, its
# digests and its audit events stay), except the results of a version with an open or approved review,
# whose evidence digest froze them: those are kept as long as the review stands. Retained evaluation data
# files go EVALUATION_DATA_RETENTION_DAYS after their run ended. Audit exports are streamed to whoever asks
# and Charter keeps no copy, so none expires here; the audit log itself, and its exported checkpoints, are
# never deleted by Charter.
EVALUATION_RESULT_RETENTION_DAYS = _env_days("EVALUATION_RESULT_RETENTION_DAYS")
EVALUATION_DATA_RETENTION_DAYS = _env_days("EVALUATION_DATA_RETENTION_DAYS")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = _env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
# HTTPS, set in production (README, "Running on PostgreSQL and Redis"; `manage.py check --deploy` is
# clean with those settings, tests/test_security_settings.py). Behind a proxy that ends TLS,
# SECURE_PROXY_SSL_HEADER names the header it sets ("X-Forwarded-Proto", meaning "=https"): only
# set it when the proxy always sets or strips that header, or a client could claim HTTPS.
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", False)


def _proxy_ssl_header(value: str) -> tuple[str, str] | None:
    name, _, expected = value.strip().partition("=")
    name = name.strip()
    if not name:
        return None
    return "HTTP_" + name.upper().replace("-", "_"), expected.strip() or "https"


SECURE_PROXY_SSL_HEADER = _proxy_ssl_header(os.environ.get("SECURE_PROXY_SSL_HEADER", ""))

# Content-Security-Policy on every page (django-csp): scripts only from Charter's own static files,
# no inline script or eval. Inline styles stay allowed: templates set style attributes, and Plotly
# styles the elements it draws. Heatmaps (and Swagger UI's icons) are data: images. The API docs need
# nothing more: Swagger UI's start script is served from their own path (governance/urls.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Sign-in throttling (django-axes, governance/accounts/lockout.py): after LOGIN_FAILURE_LIMIT failed
# sign-ins of one username from one address, that pair is refused for LOGIN_COOLOFF_MINUTES (0: until
# an admin unlocks it), even with the right password. Attempts are kept in the database, so every
# web process sees them; the audit log has each failure and the lockout itself.
AXES_ENABLED = _env_bool("LOGIN_LOCKOUT", True)
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
_cooloff_minutes = int(os.environ.get("LOGIN_COOLOFF_MINUTES", "15"))
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes) if _cooloff_minutes > 0 else None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# the cool-off runs from the lockout: attempts during it are refused and audited, not counted again
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in the audit log
AXES_LOCKOUT_CALLABLE = "governance.accounts.lockout.locked_out_response"
AXES_HTTP_RESPONSE_CODE = 403
AXES_VERBOSE = False  # no banner on every manage.py command; each failure and lockout is still logged

# The cache holds the API's rate-limit counters (governance/core/throttling.py). Redis in production
# (CACHE_URL, else REDIS_URL), shared by every web process; otherwise, as with SQLite and
# scripts/run.sh (one web process), each process's local memory.
_cache_url = os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL", "")
if _cache_url.startswith(("redis://", "rediss://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _cache_url,
            "KEY_PREFIX": "charter",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Every log line carries the request id of the request (or the requester's, in a task) it was written
# under, as X-Request-ID and the audit log show it; LOG_FORMAT=json writes one JSON object per line.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("LOG_FORMAT is 'plain' or 'json'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "governance.core.logs.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s [%(request_id)s] %(name)s %(message)s"},
        "json": {"()": "governance.core.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
