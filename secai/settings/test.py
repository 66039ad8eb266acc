"""Test settings. The database is PostgreSQL when SECAI_TEST_DB=postgres (what `make test` uses when it
is reachable) and SQLite otherwise; the broker is set per test (eager for unit tests, Redis for the
integration tests that start a real worker)."""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("SECAI_VAR_DIR", tempfile.mkdtemp(prefix="secai-test-"))
if os.environ.get("SECAI_TEST_DB", "sqlite") == "postgres":
    os.environ.setdefault("DATABASE_URL", os.environ.get("SECAI_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/secai"))
else:
    os.environ["DATABASE_URL"] = "sqlite:///" + os.path.join(os.environ["SECAI_VAR_DIR"], "test.sqlite3")

from secai.settings.base import *  # noqa: E402,F403

# The SQLite test database is a file, not :memory:: with an in-memory database every live-server
# thread shares one connection, and parallel requests (a page loading several plots) deadlock.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": os.path.join(os.environ["SECAI_VAR_DIR"], "test-db.sqlite3")}  # noqa: F405

CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SECAI_RETRAIN_AFTER_VERDICTS = 0
# Tests make hundreds of API calls per token in seconds (the schema fuzzer most of all); the rate
# limit has its own tests, which set a low rate.
SECAI_API_RATE = os.environ.get("SECAI_API_RATE", "off")

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise warns when it is missing)
