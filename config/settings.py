"""filegate settings: everything comes from the environment, with defaults that run as-is.

``DEBUG`` is off unless ``DEBUG=true`` (``make run`` sets it), so production is the default: then a
real ``SECRET_KEY`` and ``CREDENTIAL_KEYS`` are required. With ``DEBUG=true`` and nothing else set, the
project runs on SQLite with development keys and stores files under ``.data/``; ``DATABASE_URL`` selects
PostgreSQL. Per-tenant provider credentials are never settings: they live encrypted in the database.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105 - refused when DEBUG is off


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def env_secret(name: str, default: str) -> str:
    """Read ``NAME``, or the contents of the file named by ``NAME_FILE`` (Docker/K8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {path}: {exc}") from None
    return os.environ.get(name, default)


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# Off unless asked for: a debug page shows request headers (provider keys among them) and settings.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_secret("SECRET_KEY", DEV_SECRET_KEY)
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured(
        "Set SECRET_KEY (or SECRET_KEY_FILE): DEBUG is off and the development key is in use. "
        "To develop without keys, set DEBUG=true (make run does)."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
DATA_DIR = Path(env_str("DATA_DIR", str(BASE_DIR / ".data")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants.apps.TenantsConfig",
    "files_api.apps.FilesApiConfig",
    "axes",
]

MIDDLEWARE = [
    "config.middleware.ClientIdleTimeoutMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves /static/ (admin and the Swagger UI / Redoc sidecar assets) from the process itself,
    # so the docs work offline under gunicorn with no web server or CDN in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out admin login into a 429.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        env_secret("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # Off: checking every connection a request takes (PostgreSQL's pool: an empty query) cost a
        # round trip and about a sixth of a retrieve's CPU (bench/results.md). A connection a database
        # restart broke then fails one request with a 503 `database_unavailable` and Retry-After, which
        # the SDKs retry, and the pool replaces it.
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", False),
    )
}
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 20)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE > 0:
    # psycopg's connection pool, one per worker process: a request borrows a connection for its queries
    # and gives it back when it ends (long transfers give it back before the bytes move, see
    # config.database), so a gevent worker serving hundreds of clients needs only as many as query at once.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections instead
    DATABASES["default"]["OPTIONS"] = {
        "pool": {
            "min_size": 1,
            "max_size": DATABASE_POOL_SIZE,
            "timeout": env_int("DATABASE_POOL_TIMEOUT_SECONDS", 10),
        }
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Wait for the write lock instead of failing at once when uploads finish together.
    # WAL: readers never wait for a writer (nor a writer for readers), and commits need one fsync
    # fewer; the mode is stored in the database file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / ".data" / "static")))
# WhiteNoise finds the files in the apps' static folders at start-up: no collectstatic step needed.
# Until collectstatic has run, STATIC_ROOT does not exist, which is expected, not worth a warning.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at: ", category=UserWarning)

# TLS is in use when a proxy terminates it (its X-Forwarded-Proto is then trusted) or when
# SECURE_SSL_REDIRECT says clients must use https. Then plain HTTP is redirected to https (the health
# checks excepted: load balancers probe them over plain HTTP) and browsers are told to use https
# only (HSTS) for SECURE_HSTS_SECONDS.
BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_TLS_PROXY else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
_tls_in_use = BEHIND_TLS_PROXY or SECURE_SSL_REDIRECT
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600 if _tls_in_use else 0)
# Both bind every subdomain of the host (preload only once the domain is on browsers' preload lists):
# the operator's decision, so off unless set.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)

# Admin login throttling (django-axes): after ADMIN_LOGIN_FAILURE_LIMIT failed logins from one client
# address, that address is refused (429) for ADMIN_LOGIN_LOCKOUT_SECONDS, even with the right password.
# Failures are counted in the database, so every process and instance shares the count; a
# successful login clears it. `python manage.py axes_reset` lifts every lock-out at once.
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("ADMIN_LOGIN_LOCKOUT_SECONDS", 15 * 60))
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
# Behind the TLS proxy every request comes from the proxy's address: the client's is the one the proxy
# appended to X-Forwarded-For, the right-most (what a client sends itself stays to its left).
AXES_IPWARE_PROXY_ORDER = "right-most"
AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if BEHIND_TLS_PROXY else ("REMOTE_ADDR",)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["tenants.authentication.HasApiKey"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.negotiation.JSONOnlyNegotiation",
    "EXCEPTION_HANDLER": "config.errors.exception_handler",
    # Per-key rate limits, checked after authentication and before the view.
    "DEFAULT_THROTTLE_CLASSES": ["tenants.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "filegate",
    "DESCRIPTION": (
        "An OpenAI-compatible Files API in front of every LLM provider. Point the official `openai` "
        "SDK at this server, authenticate with a gateway API key, and name one of your "
        "organisation's provider accounts in the `X-Provider-Account` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The online validator badge would make the browser call validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    # Component names may only hold [A-Za-z0-9._-]; the derived name would be "ExpiresAfter[anchor]Enum".
    "ENUM_NAME_OVERRIDES": {"ExpiresAfterAnchorEnum": ["created_at"]},
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# Credential encryption: comma-separated Fernet keys. The first encrypts, all decrypt, so a new key
# goes first and the old one stays until `rotate_credentials` has re-encrypted every account.
# Required when DEBUG is off; with DEBUG on and none set, a key is derived from SECRET_KEY (then the
# credentials are only as secret as SECRET_KEY, and SECRET_KEY cannot rotate without losing them).
CREDENTIAL_KEYS = [key.strip() for key in env_secret("CREDENTIAL_KEYS", "").split(",") if key.strip()]
if not DEBUG and not CREDENTIAL_KEYS:
    raise ImproperlyConfigured(
        "Set CREDENTIAL_KEYS (or CREDENTIAL_KEYS_FILE): DEBUG is off, and provider credentials are not "
        "encrypted with a key derived from SECRET_KEY in production. Generate a key with: python -c "
        '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
    )

# Gateway-wide knobs. Per-organisation limits default to these and can be overridden per org.
DEFAULT_STORAGE_QUOTA_BYTES = env_int("DEFAULT_STORAGE_QUOTA_BYTES", 100 * 1024**3)
DEFAULT_MAX_FILE_SIZE_BYTES = env_int("DEFAULT_MAX_FILE_SIZE_BYTES", 512 * 1024**2)
DEFAULT_BATCH_MAX_SIZE_BYTES = env_int("DEFAULT_BATCH_MAX_SIZE_BYTES", 50 * 1024**2)
# One batch line is parsed whole: this caps what a line can cost (a longer one is a 400 at once).
BATCH_LINE_MAX_BYTES = env_int("BATCH_LINE_MAX_BYTES", 8 * 1024**2)
BATCH_FILE_DEFAULT_TTL_SECONDS = env_int("BATCH_FILE_DEFAULT_TTL_SECONDS", 30 * 24 * 3600)
QUOTA_RESERVATION_TTL_SECONDS = env_int("QUOTA_RESERVATION_TTL_SECONDS", 6 * 3600)
# What each API key may make per clock minute (0: no limit), unless its organisation (in admin) says
# otherwise; a key can have lower limits of its own. Every process and instance shares the count.
RATE_LIMIT_REQUESTS_PER_MINUTE = env_int("RATE_LIMIT_REQUESTS_PER_MINUTE", 6000)
RATE_LIMIT_UPLOADS_PER_MINUTE = env_int("RATE_LIMIT_UPLOADS_PER_MINUTE", 1200)
RATE_LIMIT_DOWNLOADS_PER_MINUTE = env_int("RATE_LIMIT_DOWNLOADS_PER_MINUTE", 1200)
# A process takes a key's minute from the database limit / this at a time (at least 1 request): one
# write per lease rather than per request, at the price of refusing a key early by at most
# (processes - 1) x lease requests a minute (tenants.ratelimits). Limits below it are counted exactly.
RATE_LIMIT_LEASE_DIVISOR = env_int("RATE_LIMIT_LEASE_DIVISOR", 100)
# A retrieve of a pass-through file in a final state (processed, error) is answered from the gateway's
# record for this long after the upstream last confirmed the file; then the upstream is asked again,
# which also notices a file deleted upstream behind the gateway's back. 0: ask on every retrieve.
UPSTREAM_RECHECK_SECONDS = env_int("UPSTREAM_RECHECK_SECONDS", 60)
# A recorded file the upstream says it does not have is marked missing (and audited) and answered 404;
# only when the upstream still says so this long after the first time is the record forgotten and its
# bytes released (one 404 may be transient: Azure's just-uploaded files, a mistyped base_url).
MISSING_FILE_CONFIRM_SECONDS = env_int("MISSING_FILE_CONFIRM_SECONDS", 3600)
# `reconcile_files --fix` leaves records, upstream files and stored objects younger than this alone
# (it reports them): an upload may still be between storing its bytes and recording them.
RECONCILE_GRACE_SECONDS = env_int("RECONCILE_GRACE_SECONDS", QUOTA_RESERVATION_TTL_SECONDS)
# A client that sends nothing of its request body (or reads nothing of a download) for this long is
# cut off: the upload is abandoned and its quota reservation released (config.middleware).
CLIENT_IDLE_TIMEOUT_SECONDS = env_int("CLIENT_IDLE_TIMEOUT_SECONDS", 30)
API_KEY_LAST_USED_RESOLUTION_SECONDS = env_int("API_KEY_LAST_USED_RESOLUTION_SECONDS", 60)
# Each process keeps the live keys it authenticated (with their organisation and its limits) for
# this long, saving a query per request. Revoking a key takes effect at once in the process that
# revokes it, and within this many seconds in the others; so do deletions and changed org limits.
# 0 turns the cache off.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5)
# Likewise for provider accounts looked up by id (retrieve, delete and download of a recorded file):
# an account changed in another process is used with its old settings for at most this long. 0: off.
PROVIDER_ACCOUNT_CACHE_SECONDS = env_int("PROVIDER_ACCOUNT_CACHE_SECONDS", 5)
UPSTREAM_TIMEOUT_SECONDS = env_int("UPSTREAM_TIMEOUT_SECONDS", 600)
UPSTREAM_CONNECT_TIMEOUT_SECONDS = env_int("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10)
UPSTREAM_RETRIES = env_int("UPSTREAM_RETRIES", 2)
# Hosts an org admin may point a provider account's base_url at in Django admin (operators: any host).
ORG_ADMIN_UPSTREAM_HOSTS = env_list(
    "ORG_ADMIN_UPSTREAM_HOSTS",
    "api.openai.com,*.openai.azure.com,*.cognitiveservices.azure.com,*.services.ai.azure.com,"
    "api.anthropic.com,api.groq.com",
)
ENABLED_PROVIDER_KINDS = env_list("ENABLED_PROVIDER_KINDS", "")  # empty: every kind in the registry
