"""Production settings: SECRET_KEY, DATABASE_URL and CELERY_BROKER_URL come from the environment."""

from secai.env import env_bool, env_int
from secai.settings.base import *  # noqa: F403

SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
