"""Settings shared by every deployment; values that differ come from environment variables via secai.env."""

from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab

from secai.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("SECAI_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "insecure-debug-only-key" if DEBUG else None)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, not a CDN
    "django_celery_beat",
    "django_htmx",
    "axes",
    "reviews",
    "models_registry",
    "actions",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "secai.http.CredentialsInUrlMiddleware",
    "secai.http.NulInQueryMiddleware",
    "secai.http.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "secai.http.ApiErrorMiddleware",
    "axes.middleware.AxesMiddleware",
]

# The client's address, for login lockouts and anonymous rate limits. Behind SECAI_PROXY_COUNT
# reverse proxies that each append to X-Forwarded-For, it is the entry that many places from the
# right (what the outermost trusted proxy saw); without proxies it is REMOTE_ADDR, and the header
# is ignored, since a client could rotate it to escape the limits.
SECAI_PROXY_COUNT = env_int("SECAI_PROXY_COUNT", 0)

# Login attempts (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username from one
# address, that pair is locked out for the cool-off time. The pair, not the username alone, so a
# stranger cannot lock a reviewer out from everywhere.
AXES_CLIENT_IP_CALLABLE = "secai.http.client_address"
AUTHENTICATION_BACKENDS = ["secai.auth.LoginAttemptsBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("SECAI_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("SECAI_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 429
AXES_SENSITIVE_PARAMETERS = ["password"]
AXES_VERBOSE = False  # lockouts are still logged as warnings; successful logins are not
AXES_ENABLE_ADMIN = False  # reviews.admin registers role-checked, audited pages instead

ROOT_URLCONF = "secai.urls"
WSGI_APPLICATION = "secai.wsgi.application"

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
                "reviews.context_processors.user_roles",
            ],
        },
    },
]

_default_db = f"sqlite:///{VAR_DIR / 'secai.sqlite3'}"
# Persistent connections are checked before each request or task reuses them, so web and worker
# processes get past a PostgreSQL restart without being restarted themselves.
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front, so a read-then-write transaction
    # (claiming work, scoring a batch) cannot interleave with another writer on SQLite.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "reviews:queue"
LOGOUT_REDIRECT_URL = "login"

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SECAI_MAX_BODY_BYTES", 20 * 1024 * 1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["secai.http.StrictJSONParser"],
    "DEFAULT_THROTTLE_CLASSES": ["secai.throttling.TokenRateThrottle"],
    "NUM_PROXIES": env_int("SECAI_PROXY_COUNT", 0) or None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "secai.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SecAI Review API",
    "DESCRIPTION": "Submit security events, read scores and review decisions, manage models.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name per choice set: a review decision's verdict and an action type's deadline verdict
    # are the same two values, and clients should see them as one type.
    "ENUM_NAME_OVERRIDES": {"VerdictEnum": "reviews.choices.VerdictChoice"},
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "secai.openapi.document_errors"],
}

# Caches. "default" is per process (the queue's filter counts, reused for 10 s). "shared" holds the
# API rate-limit counters, which every web process must see: Redis at CACHE_URL in production;
# the embedded default (`make demo`, one web process) keeps them in process memory.
CACHE_URL = env_str("CACHE_URL", "locmem://")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "secai-default"},
    "shared": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL.startswith(("redis://", "rediss://", "unix://"))
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "secai-shared"}
    ),
}
# Requests per token (or per logged-in user) and per minute on the API; "off" lifts the limit.
SECAI_API_RATE = env_str("SECAI_API_RATE", "1200/min")

# Celery. The default broker is kombu's filesystem transport, which needs no server; production
# sets CELERY_BROKER_URL to Redis. No result backend: the database holds every outcome.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
_broker_dir = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "polling_interval": 0.2,
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    # A broker that stopped answering must not hold an ingestion request: the event is committed
    # already and the sweeper enqueues it later, so the publish gives up after a few seconds.
    else {"visibility_timeout": 3600, "socket_connect_timeout": 5, "socket_timeout": 10}
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes a worker's database connection after every task unless this is set; secai/celery.py
# closes it only when Django would (broken, in a transaction, older than CONN_MAX_AGE).
CELERY_DB_REUSE_MAX = 500
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ROUTES = {
    # Explanations cost many predictions per event: their own queue, so they never delay scoring.
    "reviews.tasks.explain_events": {"queue": "explain"},
    "reviews.tasks.*": {"queue": "scoring"},
    "models_registry.tasks.*": {"queue": "training"},
    # Calls to the outside world have their own queue, so a slow webhook never delays scoring.
    "actions.tasks.*": {"queue": "actions"},
}
CELERY_TASK_DEFAULT_QUEUE = "scoring"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
SECAI_SWEEP_EVERY_SECONDS = env_int("SECAI_SWEEP_EVERY_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "sweep-unscored-events": {"task": "reviews.tasks.sweep_unscored_events", "schedule": float(SECAI_SWEEP_EVERY_SECONDS)},
    "expire-review-claims": {"task": "reviews.tasks.expire_claims", "schedule": 60.0},
    "reap-stale-training": {"task": "models_registry.tasks.reap_stale_training", "schedule": 120.0},
    "retrain-all-sources": {"task": "models_registry.tasks.retrain_all_sources", "schedule": crontab(minute=0, hour=3)},
    "verify-model-files": {"task": "models_registry.tasks.verify_model_files", "schedule": 300.0},
    "monitor-sources": {"task": "models_registry.tasks.monitor_sources", "schedule": crontab(minute=15)},
    "sweep-deliveries": {"task": "actions.tasks.sweep_deliveries", "schedule": 10.0},
    "apply-deadlines": {"task": "actions.tasks.apply_deadlines", "schedule": 60.0},
}

# Application settings.
MODEL_STORE = Path(env_str("MODEL_STORE", str(VAR_DIR / "models")))
SECAI_MAX_BATCH = 5000
SECAI_SCORE_BATCH = env_int("SECAI_SCORE_BATCH", 1000)
SECAI_CLAIM_SECONDS = env_int("SECAI_CLAIM_SECONDS", 15 * 60)
SECAI_UNDO_SECONDS = env_int("SECAI_UNDO_SECONDS", 120)
# A skipped item is not handed to the same reviewer by claim-next for this long (others get it at once).
SECAI_SKIP_SECONDS = env_int("SECAI_SKIP_SECONDS", 60 * 60)
SECAI_MAX_BULK = env_int("SECAI_MAX_BULK", 500)
SECAI_SWEEP_AFTER_SECONDS = env_int("SECAI_SWEEP_AFTER_SECONDS", 30)
SECAI_RETRAIN_AFTER_VERDICTS = env_int("SECAI_RETRAIN_AFTER_VERDICTS", 200)  # 0 turns it off
SECAI_MIN_LABELS_PER_CLASS = env_int("SECAI_MIN_LABELS_PER_CLASS", 50)
SECAI_MIN_PR_AUC = float(env_str("SECAI_MIN_PR_AUC", "0.5"))
# A cold-start (unsupervised) model learns what ordinary looks like from the events themselves;
# from a handful of events it learns nothing and would flag everything, so it waits for this many.
SECAI_MIN_COLD_START_EVENTS = env_int("SECAI_MIN_COLD_START_EVENTS", 200)
# Deliveries (actions, reversals, outbound events): first retry after BACKOFF seconds, doubling up
# to BACKOFF_MAX; a worker holds a delivery for LEASE seconds, after which another may send it.
SECAI_DELIVERY_BACKOFF_SECONDS = float(env_str("SECAI_DELIVERY_BACKOFF_SECONDS", "10"))
SECAI_DELIVERY_BACKOFF_MAX_SECONDS = float(env_str("SECAI_DELIVERY_BACKOFF_MAX_SECONDS", "3600"))
SECAI_DELIVERY_LEASE_SECONDS = env_int("SECAI_DELIVERY_LEASE_SECONDS", 120)
SECAI_ALLOWLIST_DAYS = env_int("SECAI_ALLOWLIST_DAYS", 90)  # expiry of an entry added by an overturn
# One run of the deadline fallbacks (beat, every minute) works through every due item in chunks
# until none is left or this many seconds have passed; the next run goes on from there.
SECAI_DEADLINE_BUDGET_SECONDS = float(env_str("SECAI_DEADLINE_BUDGET_SECONDS", "45"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"handlers": ["console"], "level": "INFO"},
    # Request lines logged by the web server (runserver's django.server) lose the values of
    # credential-like query parameters; such requests are refused anyway (secai.http).
    "filters": {"redact_credentials": {"()": "secai.http.RedactCredentialsFilter"}},
    "formatters": {"server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}", "style": "{"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact_credentials"]},
        "server": {"class": "logging.StreamHandler", "formatter": "server", "filters": ["redact_credentials"]},
    },
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"handlers": ["server"], "level": "INFO", "propagate": False},
    },
}
