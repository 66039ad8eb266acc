"""The API rate limit counts in Redis, so that every web process sees the same count: requests
made by another process with the same token use up this process's allowance too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from django.core.cache import caches
from django.db import connection
from rest_framework.authtoken.models import Token

from tests.integration.conftest import REDIS_URL, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OTHER_PROCESS = textwrap.dedent(
    """
    import os, sys
    import django
    django.setup()
    from django.test.utils import setup_test_environment
    setup_test_environment()  # the test client's host name, as in the parent process
    from rest_framework.test import APIClient
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + sys.argv[1])
    print(",".join(str(client.get("/api/v1/sources/").status_code) for _ in range(int(sys.argv[2]))))
    """
)


def test_requests_from_another_process_count_against_the_same_token(ingest, api, settings):
    settings.SECAI_API_RATE = "4/min"
    settings.CACHES = {
        **settings.CACHES,
        "shared": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL},
    }
    key = Token.objects.create(user=ingest).key
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "secai.settings.test",
        "SECAI_TEST_DB": "postgres",
        # the other process reads the same (test) database and the same Redis
        "DATABASE_URL": "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**connection.settings_dict),
        "CACHE_URL": REDIS_URL,
        "SECAI_API_RATE": "4/min",
        "PYTHONPATH": str(ROOT),
    }
    other = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, key, "3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert other.returncode == 0, other.stderr[-2000:]
    assert other.stdout.strip().splitlines()[-1] == "200,200,200"
    try:
        assert api(ingest).get("/api/v1/sources/").status_code == 200  # the fourth of four
        limited = api(ingest).get("/api/v1/sources/")
        assert limited.status_code == 429 and limited.json()["errors"]
    finally:
        caches["shared"].clear()
