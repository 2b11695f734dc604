"""Settings for RPA Monitor.

Everything a deployment changes comes from environment variables; with none set
the project runs for development on a SQLite file next to the code.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name, "")
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    # A fixed development key only: with DEBUG=0 the web application refuses it and commands warn
    # (rpa_monitor/startup.py); check --deploy flags it too.
    SECRET_KEY = "django-insecure-rpa-monitor-development-key-change-me"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Where runtime files live (SQLite database, JSON log files).
DATA_DIR = Path(os.environ.get("RPA_DATA_DIR", BASE_DIR / "var"))
LOG_DIR = Path(os.environ.get("RPA_LOG_DIR", DATA_DIR / "logs"))
LOG_DIR.mkdir(parents=True, exist_ok=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "django_crontab",
    "django_tasks",
    "django_tasks_db",
    "ninja",
    "rpa_monitor",
    "chains",
    "logs",
    "triggers",
    "api",
    "alerts",
    "credentials",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The admin's CSS and JavaScript, served by the web server itself (STATIC_ROOT after
    # collectstatic; straight from the apps with DEBUG=1).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # A body over DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 before anything reads it.
    "rpa_monitor.middleware.RequestSizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "rpa_monitor.urls"
WSGI_APPLICATION = "rpa_monitor.wsgi.application"
ASGI_APPLICATION = "rpa_monitor.asgi.application"

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
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
SQLITE_PATH = Path(os.environ.get("RPA_SQLITE_PATH", DATA_DIR / "rpa_monitor.sqlite3"))
SQLITE_OPTIONS = {
    # IMMEDIATE takes the write lock when a transaction starts, so two writers
    # queue on busy_timeout instead of failing with "database is locked" when a
    # read lock cannot be upgraded.
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": (
        "PRAGMA journal_mode=WAL;PRAGMA synchronous=NORMAL;PRAGMA busy_timeout=30000;PRAGMA foreign_keys=ON;"
    ),
}

if os.environ.get("DATABASE_URL"):
    # CONN_MAX_AGE=0: a connection is closed when the request that opened it finishes. The web
    # server is ASGI (uvicorn), where Django runs each request's sync code on a thread of its own;
    # a persistent connection belongs to that thread and outlives it, never closed again (runserver,
    # thread per request, leaked the same way: 48 PostgreSQL connections after 1,000 requests).
    # Long-running commands (db_worker, run_scheduler) reconnect once per loop instead, a few ms.
    # psycopg's pool (OPTIONS "pool") would save that but holds min_size connections open in every
    # process, each cron tick and python-bot child too (README, "Serve in production").
    DATABASES = {"default": dj_database_url.config(conn_max_age=0)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(SQLITE_PATH),
            "OPTIONS": SQLITE_OPTIONS,
        }
    }

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})
    for key, value in SQLITE_OPTIONS.items():
        DATABASES["default"]["OPTIONS"].setdefault(key, value)
    # Tests use a real file too: subprocesses (commands, bots) must see the same database.
    DATABASES["default"].setdefault("TEST", {})
    DATABASES["default"]["TEST"].setdefault(
        "NAME", os.environ.get("RPA_TEST_SQLITE_PATH", str(DATA_DIR / "test_rpa_monitor.sqlite3"))
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Tests only: MD5 instead of PBKDF2, because hashing test users' passwords was 40 % of a test
# run. conftest.py sets this for pytest itself; rpa_monitor/pytest_plugin.py sets
# RPA_TEST_FAST_HASHER=1 for the processes tests start, and it is honoured only against a
# database named test_* (Django's test databases), so a deployment cannot turn it on by accident.
TEST_PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.MD5PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
_on_a_test_database = Path(str(DATABASES["default"]["NAME"])).name.startswith("test_")
if env_bool("RPA_TEST_FAST_HASHER", False) and _on_a_test_database:
    PASSWORD_HASHERS = TEST_PASSWORD_HASHERS

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static"))

# --- Security (production values come from the environment) ----------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if os.environ.get("SECURE_PROXY_SSL_HEADER"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Background tasks (Django's Tasks API through the django-tasks backport) ---
TASKS = {
    "default": {
        "BACKEND": os.environ.get("RPA_TASKS_BACKEND", "django_tasks_db.DatabaseBackend"),
    }
}

# --- RPA Monitor -------------------------------------------------------------
# Where workflows run when they name no working_dir; relative commands resolve here.
RPA_DEFAULT_WORKDIR = Path(os.environ.get("RPA_DEFAULT_WORKDIR", BASE_DIR))
# A running run renews its heartbeat this often ...
RPA_HEARTBEAT_SECONDS = env_int("RPA_HEARTBEAT_SECONDS", 10)
# ... and is declared abandoned when the heartbeat is older than this.
RPA_RUN_LEASE_SECONDS = env_int("RPA_RUN_LEASE_SECONDS", 60)
# /health says "degraded" when no scheduler tick happened for this long (cron ticks every minute).
RPA_SCHEDULER_MAX_AGE_SECONDS = env_int("RPA_SCHEDULER_MAX_AGE_SECONDS", 180)
# Optional bearer token /metrics requires (Authorization: Bearer <token>).
RPA_METRICS_TOKEN = os.environ.get("RPA_METRICS_TOKEN", "")
# After a timeout the process group gets SIGTERM, then SIGKILL after this grace.
RPA_KILL_GRACE_SECONDS = env_int("RPA_KILL_GRACE_SECONDS", 5)
# A bot line longer than this is stored truncated.
RPA_MAX_LINE_BYTES = env_int("RPA_MAX_LINE_BYTES", 64 * 1024)
# Bot output is written to the database in batches of this many lines or this often.
RPA_LOG_BATCH_SIZE = env_int("RPA_LOG_BATCH_SIZE", 2000)
RPA_LOG_FLUSH_SECONDS = float(os.environ.get("RPA_LOG_FLUSH_SECONDS", "0.5"))
# A bot is paused (SIGSTOP) while this many bytes of its output spool are not stored yet, as a
# full pipe used to hold it; continued at half of it. Bounds the disk a firehose bot can fill.
RPA_SPOOL_MAX_BACKLOG_BYTES = env_int("RPA_SPOOL_MAX_BACKLOG_BYTES", 16 * 1024 * 1024)
# The only names of the worker's environment a `command` bot gets (besides its run variables,
# its workflow's environment and the trace context): never SECRET_KEY, DATABASE_URL, EMAIL_*.
RPA_BOT_ENV_PASSTHROUGH = env_list(
    "RPA_BOT_ENV_PASSTHROUGH", ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME"]
)
# Where this site is reached: links in alert notifications and reports point here.
RPA_BASE_URL = os.environ.get("RPA_BASE_URL", "http://localhost:8000").rstrip("/")
# An alert notification (webhook, Slack, PagerDuty, email) waits this long for its server ...
RPA_ALERT_HTTP_TIMEOUT = float(os.environ.get("RPA_ALERT_HTTP_TIMEOUT", "5"))
# ... and a failed one is retried this many times in all, backing off from this delay (doubling).
RPA_ALERT_MAX_ATTEMPTS = env_int("RPA_ALERT_MAX_ATTEMPTS", 5)
RPA_ALERT_RETRY_SECONDS = env_int("RPA_ALERT_RETRY_SECONDS", 30)
# Webhook, Slack and PagerDuty targets on loopback, link-local, private or reserved addresses are
# refused (at save and after DNS at send) unless this is on: a channel must not reach internal services.
RPA_ALLOW_PRIVATE_WEBHOOKS = env_bool("RPA_ALLOW_PRIVATE_WEBHOOKS", False)
# The scheduler tick refreshes today's per-workflow daily aggregates at most this often.
RPA_ROLLUP_SECONDS = env_int("RPA_ROLLUP_SECONDS", 300)
# Daily aggregates are kept this many days (they outlive run and log retention).
RPA_AGGREGATE_DAYS = env_int("RPA_AGGREGATE_DAYS", 366)
# Fernet keys for secrets at rest, comma-separated: the first encrypts, all decrypt (rotation).
# Unset: one key derived from SECRET_KEY (credentials/vault.py: derived_key).
RPA_SECRET_KEYS = env_list("RPA_SECRET_KEYS", [])
# Bounds on what one request can make the server hold or write (DESIGN §14, §20).
RPA_MAX_CHAIN_STEPS = env_int("RPA_MAX_CHAIN_STEPS", 200)
# Params travel to bots in the RPA_PARAMS environment variable (Linux caps one at 128 KiB).
RPA_MAX_PARAMS_BYTES = env_int("RPA_MAX_PARAMS_BYTES", 65_536)
# Who gets `manage.py send_report` (default: the targets of enabled email channels).
RPA_REPORT_RECIPIENTS = env_list("RPA_REPORT_RECIPIENTS", [])
# File triggers read only under these directories (colon-separated; paths and symlinks resolved).
RPA_FILE_TRIGGER_ROOTS = [
    root for root in (os.environ.get("RPA_FILE_TRIGGER_ROOTS") or str(DATA_DIR / "inbox")).split(":") if root
]

# --- Email (alert notifications and reports go through Django's mail backend) -----
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "rpa-monitor@localhost")
# With EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend: where messages are written.
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Logging -----------------------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {"format": "%(asctime)s %(levelname)-8s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "timestamp", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
        "json_file": {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(LOG_DIR / "rpa_monitor.jsonl"),
            "maxBytes": 20 * 1024 * 1024,
            "backupCount": 5,
            "formatter": "json",
            "delay": True,
        },
        "database": {
            "class": "logs.handlers.DatabaseHandler",
            # Records are written in batches: this many, or after this many seconds, or at exit.
            "batch_size": env_int("RPA_LOG_HANDLER_BATCH", 500),
            "flush_interval": float(os.environ.get("RPA_LOG_HANDLER_FLUSH_SECONDS", "1.0")),
        },
    },
    "loggers": {
        "rpa": {
            "handlers": ["console", "json_file", "database"],
            "level": LOG_LEVEL,
            "propagate": False,
        },
        "django": {"handlers": ["console", "json_file"], "level": "INFO", "propagate": False},
    },
}

# --- Cron (django-crontab: `manage.py crontab add|show|remove`) ---------------
CRONTAB_COMMAND_PREFIX = (
    f"DJANGO_SETTINGS_MODULE={os.environ.get('DJANGO_SETTINGS_MODULE', 'rpa_monitor.settings')}"
)
CRONTAB_COMMAND_SUFFIX = f">> {LOG_DIR / 'cron.log'} 2>&1"
CRONJOBS: list[tuple[str, str, list[str]]] = [
    # One scheduler tick: reap stale runs, fire due triggers, scan file triggers.
    # Safe on any number of hosts at once: each slot fires exactly once.
    ("* * * * *", "django.core.management.call_command", ["fire_triggers"]),
    # Run queued work (admin, API and trigger runs), then exit; for hosts without a
    # long-running `manage.py db_worker`.
    (
        "* * * * *",
        "django.core.management.call_command",
        ["db_worker", "--batch", "--no-startup-delay", "--no-reload"],
    ),
    # Retention, daily at 03:17: old log entries and finished run history.
    ("17 3 * * *", "django.core.management.call_command", ["purge_logs", "--older-than", "90d"]),
    # Reports by email: yesterday's summary every morning, last week's (with a PDF) on Mondays.
    ("5 7 * * *", "django.core.management.call_command", ["send_report", "--period", "day"]),
    ("10 7 * * 1", "django.core.management.call_command", ["send_report", "--period", "week"]),
]
