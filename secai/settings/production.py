"""Production settings. Every secret and every service address comes from the environment, with no
default: a missing or placeholder value stops the process at start-up instead of running insecurely."""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ["DEBUG"] = "0"  # never in production, whatever the environment says

from secai.env import env_bool, env_int, env_list, env_str  # noqa: E402
from secai.settings.base import *  # noqa: E402,F403

# Values that have appeared in this code base or its documentation: never valid in production.
KNOWN_PLACEHOLDERS = {"insecure-debug-only-key", "test-only-secret-key", "change-me", "changeme", "secret", "..."}


def _secret_key() -> str:
    key = env_str("SECRET_KEY")
    if key in KNOWN_PLACEHOLDERS or key.startswith("django-insecure") or len(key) < 50 or len(set(key)) < 5:
        raise ImproperlyConfigured(
            "SECRET_KEY must be a random value of at least 50 characters, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    return key


DEBUG = False
SECRET_KEY = _secret_key()
# base.py read these with embedded defaults (SQLite, the filesystem broker, per-process caches);
# production takes them from the environment or not at all. CACHE_URL holds the rate-limit
# counters shared by every web process; "locmem://" is accepted only when given explicitly, for a
# deployment with one web process.
for _name in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"):
    env_str(_name)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required (comma-separated host names)")

# HTTPS only. Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER=1 so that the proxy's
# X-Forwarded-Proto tells Django the request was secure; the proxy must overwrite that header.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]  # probes from inside the network speak plain HTTP
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Preloading is a decision of the domain's owner (a submission to the browsers' lists, hard to
    # undo), not of this application, so its absence is not reported.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
