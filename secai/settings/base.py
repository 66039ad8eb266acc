"""Settings shared by every deployment; values that differ come from environment variables via secai.env."""

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
    "reviews",
    "models_registry",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "secai.http.ApiErrorMiddleware",
]

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
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=60)}
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
}

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
    else {"visibility_timeout": 3600}
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ROUTES = {
    "reviews.tasks.*": {"queue": "scoring"},
    "models_registry.tasks.*": {"queue": "training"},
}
CELERY_TASK_DEFAULT_QUEUE = "scoring"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "sweep-unscored-events": {"task": "reviews.tasks.sweep_unscored_events", "schedule": 30.0},
    "expire-review-claims": {"task": "reviews.tasks.expire_claims", "schedule": 60.0},
    "reap-stale-training": {"task": "models_registry.tasks.reap_stale_training", "schedule": 600.0},
    "retrain-all-sources": {"task": "models_registry.tasks.retrain_all_sources", "schedule": crontab(minute=0, hour=3)},
    "monitor-sources": {"task": "models_registry.tasks.monitor_sources", "schedule": crontab(minute=15)},
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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
