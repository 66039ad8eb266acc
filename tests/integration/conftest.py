"""Fixtures for the integration tests: PostgreSQL as the database, Redis as the broker and real
processes started per test (Celery workers, beat, gunicorn from the Procfile), plus private
Redis and PostgreSQL servers that the fault tests stop and restart. Without the services the
tests skip and say why; with CI=true a missing service fails them instead, so CI cannot go green
by skipping."""

from __future__ import annotations

import contextlib
import glob
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
# libpq's default application_name for every process these fixtures start: tells their database
# sessions apart from this process's.
PROCESS_APPNAME = "secai-integration-process"
# Ports for servers started here (the machine's other users keep to theirs).
WEB_PORTS, REDIS_PORTS, POSTGRES_PORTS = (8400, 8499), (6400, 6499), (5500, 5599)
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


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Switch this process's Celery app from eager mode to the broker at url, and back."""
    from secai.celery import app

    keys = ("broker_url", "task_always_eager", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}
    _reset_producer_pool(app)
    app.conf.update(
        broker_url=url,
        task_always_eager=False,
        broker_transport_options={"visibility_timeout": 3600, "socket_connect_timeout": 5, "socket_timeout": 10},
    )
    assert app.conf.broker_url == url, "CELERY_BROKER_URL in the environment overrides the test broker"
    try:
        yield
    finally:
        _reset_producer_pool(app)
        app.conf.update(saved)


@pytest.fixture
def redis_broker(_integration_services) -> Iterator[redis.Redis]:
    """This process's Celery app on Redis, on a flushed database of its own."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        with celery_broker(REDIS_URL):
            yield client
    finally:
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


class Process:
    """A subprocess in its own process group (so a kill reaches its children), logging to a file."""

    def __init__(self, name: str, proc: subprocess.Popen, log_path: Path):
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session makes the process its group's leader

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return f"--- last lines of {self.name}'s log ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def children(self) -> list[int]:
        """Processes the main process forked (a prefork pool, gunicorn's workers)."""
        return sorted(pid for pid in _live_pids_in_group(self.pgid) if _parent_pid(pid) == self.proc.pid)

    def wait_for_log(self, text: str, *, timeout: float = WORKER_READY_SECONDS) -> None:
        def seen() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.proc.returncode}\n{self.log_tail()}", pytrace=False)
            return text in self.log()

        wait_until(seen, timeout=timeout, what=f"{self.name} to log {text!r}", on_timeout=self.log_tail)

    def kill(self) -> None:
        """SIGKILL the whole group and wait until none of it runs."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        wait_until(lambda: not _live_pids_in_group(self.pgid), timeout=30, what=f"the processes of {self.name} to die")

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


class Worker(Process):
    """A `celery worker` process."""

    def received(self, task: str) -> list[str]:
        return [m["id"] for m in _RECEIVED.finditer(self.log()) if m["task"] == task]

    def succeeded(self, task: str) -> dict[str, str]:
        """task id -> repr of the return value, for every run of `task` that finished."""
        return {m["id"]: m["result"].strip() for m in _SUCCEEDED.finditer(self.log()) if m["task"] == task}

    def pool_pids(self) -> list[int]:
        """The prefork pool's child processes."""
        return self.children()

    def wait_ready(self) -> None:
        self.wait_for_log(" ready.")


def free_port(ports: tuple[int, int]) -> int:
    """A port in the range that nothing listens on now."""
    low, high = ports
    for port in random.sample(range(low, high + 1), high - low + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail(f"no free port in {low}-{high}", pytrace=False)


def database_url(db: dict[str, Any]) -> str:
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def procfile_command(name: str, env: dict[str, str]) -> list[str]:
    """The Procfile's command for a process type, as this checkout's virtualenv runs it."""
    lines = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line.strip() and not line.startswith("#")
    )
    text = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1], m[2]), lines[name].strip())
    program, *args = shlex.split(text)
    return [sys.executable, *([] if program == "python" else ["-m", program]), *args]


@pytest.fixture
def spawn(transactional_db, settings, tmp_path) -> Iterator[Callable[..., Process]]:
    """spawn(name, command | procfile name, *, database_url=, broker_url=, env=, cls=Process) ->
    a started Process. By default it uses this test's database and Redis database and this
    process's MODEL_STORE, so it sees what the test commits, sends and writes. Every process is
    stopped, or killed, before the test database is flushed."""
    from django.db import connection

    test_db = connection.settings_dict
    started: list[Process] = []
    on_test_db: list[Process] = []

    def start(
        name: str,
        command: list[str] | str,
        *,
        database: str | None = None,
        broker_url: str = REDIS_URL,
        env: dict[str, str] | None = None,
        cls: type[Process] = Process,
    ) -> Process:
        var_dir = tmp_path / f"{name}-var"
        var_dir.mkdir(exist_ok=True)
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "secai.settings.local",
            "DEBUG": "0",
            "DATABASE_URL": database or database_url(test_db),
            "CELERY_BROKER_URL": broker_url,
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "MODEL_STORE": str(settings.MODEL_STORE),
            "SECAI_VAR_DIR": str(var_dir),
            "SECRET_KEY": "integration-test-process-key",
            # The sweeper runs in the worker; in these tests "left behind" means "left behind now".
            "SECAI_SWEEP_AFTER_SECONDS": "0",
            "SECAI_RETRAIN_AFTER_VERDICTS": "0",
            "PYTHONUNBUFFERED": "1",
            "PGAPPNAME": PROCESS_APPNAME,
            **(env or {}),
        }
        cmd = procfile_command(command, full_env) if isinstance(command, str) else command
        log_path = tmp_path / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        process = cls(name, proc, log_path)
        started.append(process)
        if database is None:
            on_test_db.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()
        # The processes' database sessions end with them; wait for that so the flush after this
        # test does not queue behind a dying backend's locks.
        if on_test_db:
            wait_until(
                lambda: _process_backends(test_db["NAME"]) == 0, timeout=30, what="the processes' database sessions to close"
            )


@pytest.fixture
def secai_worker(spawn, redis_broker) -> Callable[..., Worker]:
    """secai_worker(concurrency=2, *, queues=..., command=None, **spawn options) -> a started,
    ready Worker; by default on the test database and the test Redis database."""

    def start(
        *, concurrency: int = 2, queues: str = "scoring,explain,training,actions", command: list[str] | None = None, **options
    ) -> Worker:
        name = f"it-{uuid.uuid4().hex[:8]}"
        cmd = command or [
            sys.executable, "-m", "celery", "-A", "secai", "worker",
            "-Q", queues, "--pool=prefork", "-c", str(concurrency), "-l", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        worker = spawn(name, [*cmd, "-n", f"{name}@%h"], cls=Worker, **options)
        assert isinstance(worker, Worker)
        worker.wait_ready()
        return worker

    return start


@pytest.fixture
def web_server(spawn) -> Callable[..., tuple[Process, str]]:
    """web_server(**spawn options) -> (gunicorn started from the Procfile with two workers, its
    base URL), once /healthz answers."""
    import requests

    def start(**options) -> tuple[Process, str]:
        port = free_port(WEB_PORTS)
        env = {"PORT": str(port), "SECAI_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", **options.pop("env", {})}
        web = spawn(f"web-{port}", "web", env=env, **options)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if web.proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {web.proc.returncode}\n{web.log_tail()}", pytrace=False)
            try:
                return requests.get(f"{url}/healthz", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=WORKER_READY_SECONDS, what="gunicorn to answer /healthz", on_timeout=web.log_tail)
        wait_until(lambda: len(web.children()) == 2, timeout=30, what="gunicorn's two workers", on_timeout=web.log_tail)
        return web, url

    return start


@pytest.fixture
def beat(spawn) -> Callable[..., Process]:
    """beat(sweep_every=2, **spawn options) -> the Procfile's beat, its sweeper every few seconds."""

    def start(*, sweep_every: int = 2, **options) -> Process:
        env = {"SECAI_SWEEP_EVERY_SECONDS": str(sweep_every), **options.pop("env", {})}
        process = spawn(f"beat-{uuid.uuid4().hex[:6]}", "beat", env=env, **options)
        process.wait_for_log("beat: Starting...")
        return process

    return start


def _process_backends(db_name: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # a fresh view even inside a transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s", [db_name, PROCESS_APPNAME]
        )
        return cursor.fetchone()[0]


# ------------------------------------------------------------------ private servers for the fault tests


class PrivateRedis:
    """A redis-server of this test's own, without persistence: stopping it loses every message,
    as a crashed broker would."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port(REDIS_PORTS)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout=20, what=f"the private redis-server on port {self.port}")
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def private_redis(_integration_services) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        _unavailable("redis-server is not installed, so no private Redis can be started")
    directory = Path(tempfile.mkdtemp(prefix="secai-redis-"))
    server = PrivateRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of this test's own (initdb in a temporary folder, trust auth on
    127.0.0.1), which the test may stop and restart. Run as the postgres OS user when this process
    is root, since the server refuses to run as root."""

    def __init__(self, bindir: Path, root: Path):
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port(POSTGRES_PORTS)
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:
            shutil.chown(root, "postgres", "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_postgres, *args], check=True, capture_output=True, timeout=120)

    def _pg_ctl(self, *args: str) -> None:
        # No fsync: the tests stop the server cleanly (or restart it), never the machine.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=50"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            *args,
        )

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode)

    def restart(self) -> None:
        """Fast shutdown (every session is terminated, open transactions roll back), then start."""
        self._pg_ctl("restart", "-m", "fast")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def copy_of(self, source_url: str, dbname: str) -> str:
        """A new database here holding everything the source database holds now."""
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", dbname)
        dump = subprocess.run(
            [str(self.bindir / "pg_dump"), "--no-owner", "--no-privileges", source_url],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(self.bindir / "psql"), "-q", "-v", "ON_ERROR_STOP=1", self.url(dbname)],
            input=dump.stdout,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return self.url(dbname)


@pytest.fixture
def private_postgres(_integration_services) -> Iterator[PrivatePostgres]:
    bindir = _postgres_bin()
    if bindir is None or (os.geteuid() == 0 and shutil.which("runuser") is None):
        _unavailable("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) or runuser are missing")
    server = PrivatePostgres(bindir, Path(tempfile.mkdtemp(prefix="secai-pg-")))
    try:
        server.init()
        server.start()
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(server.root, ignore_errors=True)
        _unavailable(f"a private PostgreSQL cluster could not be started: {exc.stderr.decode(errors='replace')[-500:]}")
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped by the test
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def nsl_client(trained_source, ingest):
    """The REST client that emits nsl-kdd events, granted that source."""
    trained_source.api_clients.add(ingest)
    return ingest
