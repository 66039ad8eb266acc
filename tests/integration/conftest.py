"""Fixtures for the integration tests: PostgreSQL as the database, Redis as the broker and real
Celery worker processes started per test. Without those services the tests skip and say why;
with CI=true a missing service fails them instead, so CI cannot go green by skipping."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu.pools
import pytest
import redis

ROOT = Path(__file__).resolve().parent.parent.parent
REDIS_URL = os.environ.get("SECAI_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKER_READY_SECONDS = 60
WORKER_APPNAME = "secai-integration-worker"
_SUCCEEDED = re.compile(r"Task (?P<task>[\w.]+)\[(?P<id>[0-9a-f-]+)\] succeeded in [\d.e-]+s: (?P<result>.*)$", re.MULTILINE)
_RECEIVED = re.compile(r"Task (?P<task>[\w.]+)\[(?P<id>[0-9a-f-]+)\] received", re.MULTILINE)


def _unavailable(reason: str) -> None:
    if CI:
        pytest.fail(f"CI=true, so this is a failure and not a skip: {reason}", pytrace=False)
    pytest.skip(reason)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session", autouse=True)
def _integration_services() -> None:
    """Session-scoped and autouse so it runs before pytest-django tries to create the database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        _unavailable(
            "integration tests need PostgreSQL and Redis: run them with SECAI_TEST_DB=postgres (the database is SQLite now)"
        )
    host, port = db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)
    if not _reachable(host, port):
        _unavailable(f"PostgreSQL at {host}:{port} is not reachable")
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        _unavailable(f"Redis at {REDIS_URL} is not reachable ({exc})")


def _reset_producer_pool(app) -> None:
    # The app's connection and producer pools are created on first use for the broker URL of that
    # moment, and kombu keeps them in a process-wide registry; close and forget them all so the
    # next send connects to the broker configured now.
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


@pytest.fixture
def redis_broker(_integration_services) -> Iterator[redis.Redis]:
    """Switch this process's Celery app from eager mode to Redis, on a flushed database of its own."""
    from secai.celery import app

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    keys = ("broker_url", "task_always_eager", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    _reset_producer_pool(app)
    app.conf.update(broker_url=REDIS_URL, task_always_eager=False, broker_transport_options={"visibility_timeout": 3600})
    assert app.conf.broker_url == REDIS_URL, "CELERY_BROKER_URL in the environment overrides the test broker"
    try:
        yield client
    finally:
        _reset_producer_pool(app)
        app.conf.update(saved)
        client.flushdb()
        client.close()


def wait_until(
    predicate: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2, on_timeout: Callable[[], str] | None = None
) -> Any:
    """Poll predicate until it returns something truthy; fail with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}", pytrace=False)
        time.sleep(interval)


def _live_pids_in_group(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a killed pool child may wait for a reaper)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state != "Z":
            pids.append(int(entry))
    return pids


def _parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


class Worker:
    """A `celery worker` subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path):
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session makes the worker its group's leader

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return f"--- last lines of {self.name}'s log ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def received(self, task: str) -> list[str]:
        return [m["id"] for m in _RECEIVED.finditer(self.log()) if m["task"] == task]

    def succeeded(self, task: str) -> dict[str, str]:
        """task id -> repr of the return value, for every run of `task` that finished."""
        return {m["id"]: m["result"].strip() for m in _SUCCEEDED.finditer(self.log()) if m["task"] == task}

    def pool_pids(self) -> list[int]:
        """The prefork pool's child processes."""
        return [pid for pid in _live_pids_in_group(self.pgid) if _parent_pid(pid) == self.proc.pid]

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"worker {self.name} exited with {self.proc.returncode} while starting\n{self.log_tail()}", pytrace=False
                )
            return " ready." in self.log()

        wait_until(ready, timeout=WORKER_READY_SECONDS, what=f"worker {self.name} to be ready", on_timeout=self.log_tail)

    def kill(self) -> None:
        """SIGKILL the whole group (main process and pool children) and wait until none runs."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        wait_until(lambda: not _live_pids_in_group(self.pgid), timeout=30, what=f"the processes of worker {self.name} to die")

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL whatever is left."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None or _live_pids_in_group(self.pgid):
            self.kill()


@pytest.fixture
def secai_worker(transactional_db, redis_broker, settings, tmp_path) -> Iterator[Callable[..., Worker]]:
    """secai_worker(concurrency=2) -> a started, ready Worker on the test database and broker.

    The worker sees the rows this test commits (hence transactional_db), the model files this
    process writes (same MODEL_STORE) and the messages this process sends (same Redis database).
    Every worker started here is stopped, or killed, before the database is flushed.
    """
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    database_url = f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    var_dir = tmp_path / "worker-var"
    var_dir.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "secai.settings.local",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "MODEL_STORE": str(settings.MODEL_STORE),
        "SECAI_VAR_DIR": str(var_dir),
        "SECRET_KEY": "integration-test-worker-key",
        # The sweeper runs in the worker; in these tests "left behind" means "left behind now".
        "SECAI_SWEEP_AFTER_SECONDS": "0",
        "SECAI_RETRAIN_AFTER_VERDICTS": "0",
        "PYTHONUNBUFFERED": "1",
        "PGAPPNAME": WORKER_APPNAME,  # libpq's default application_name: tells the workers' sessions apart
    }
    workers: list[Worker] = []

    def start(*, concurrency: int = 2, extra_env: dict[str, str] | None = None) -> Worker:
        name = f"it-{uuid.uuid4().hex[:8]}"
        log_path = tmp_path / f"{name}.log"
        cmd = [
            sys.executable, "-m", "celery", "-A", "secai", "worker",
            "-Q", "scoring,training,actions", "--pool=prefork", "-c", str(concurrency), "-n", f"{name}@%h", "-l", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**env, **(extra_env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        worker = Worker(name, proc, log_path)
        workers.append(worker)
        worker.wait_ready()
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            worker.stop()
        # The workers' database sessions end with their processes; wait for that so the flush
        # after this test does not queue behind a dying backend's locks.
        wait_until(lambda: _worker_backends(db["NAME"]) == 0, timeout=30, what="the workers' database sessions to close")


def _worker_backends(db_name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s", [db_name, WORKER_APPNAME]
        )
        return cursor.fetchone()[0]
