"""What every section of the benchmark shares: settings from the environment, the machine's
description, percentiles, the PostgreSQL database and Redis database it owns, NSL-KDD rows, and
the real processes it starts (gunicorn, Celery workers) with their resident memory."""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "nsl-kdd"
HISTORY = DATA / "KDDTrain+_20Percent.csv.gz"
LIVE = DATA / "KDDTest+.csv.gz"
PG_HOST, PG_PORT = os.environ.get("SECAI_BENCH_PG_HOST", "127.0.0.1"), int(os.environ.get("SECAI_BENCH_PG_PORT", "5432"))
DB_PREFIX = os.environ.get("SECAI_BENCH_DB_PREFIX", "secai_benchh")
REDIS_URL = os.environ.get("SECAI_BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
WEB_PORT = int(os.environ.get("SECAI_BENCH_PORT", "18300"))
OUT_DIR = Path(os.environ.get("SECAI_BENCH_OUT", str(ROOT / "var" / "bench")))


def say(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)).replace("_", ""))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100) with linear interpolation between closest ranks, as
    numpy's default: p50 of [1, 2, 3, 4] is 2.5."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ------------------------------------------------------------------ the machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    import numpy
    import pandas
    import sklearn

    return {
        "cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "pandas": pandas.__version__,
        "numpy": numpy.__version__,
    }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------ results


@dataclass
class Figure:
    """One line of the summary: the product's figure next to the raw limit of the same run."""

    name: str
    figure: float
    unit: str
    raw: float | None = None
    raw_what: str = ""
    target: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    started: str
    machine: dict[str, Any]
    load_start: list[float]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load_end: list[float] = field(default_factory=list)
    finished: str = ""
    seconds: float = 0.0

    def add(self, fig: Figure) -> None:
        self.figures.append(fig)
        met = "" if fig.met is None else ("met" if fig.met else "NOT met")
        raw = f"  (raw: {fig.raw:,.0f} {fig.raw_what})" if fig.raw is not None else ""
        say(f"RESULT {fig.name}: {fig.figure:,.1f} {fig.unit}{raw}  target {fig.target}: {met}")

    def markdown(self) -> str:
        m = self.machine
        lines = [
            f"## SecAI Review benchmark, {self.started} UTC",
            "",
            f"- Machine: {m['cpus']} CPU(s), {m['cpu_model']}, {m['kernel']}; Python {m['python']}, scikit-learn"
            f" {m['sklearn']}, pandas {m['pandas']}, numpy {m['numpy']}; {m.get('postgresql', '')}",
            f"- Load average (1/5/15 min): {self.load_start} at the start, {self.load_end} at the end"
            f" (finished {self.finished} UTC, {self.seconds / 60:.1f} min)",
        ]
        lines += [f"- {n}" for n in self.notes]
        lines += ["", "| figure | measured | raw limit, same run, same rows | ratio | target | |", "|---|---|---|---|---|---|"]
        for f in self.figures:
            raw = f"{f.raw:,.0f} {f.raw_what}" if f.raw is not None else ""
            ratio = f"{f.figure / f.raw:.0%}" if f.raw else ""
            met = "" if f.met is None else ("met" if f.met else "**NOT met**")
            value = f"{f.figure:,.0f}" if abs(f.figure) >= 100 else f"{f.figure:,.2f}"
            lines.append(f"| {f.name} | {value} {f.unit} | {raw} | {ratio} | {f.target} | {met} |")
        for f in self.figures:
            if f.detail:
                lines.append("")
                lines.append(f"{f.name}: " + "; ".join(f"{k} {v}" for k, v in f.detail.items()))
        return "\n".join(lines) + "\n"

    def write(self) -> Path:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "results.json").write_text(
            json.dumps(
                {k: v for k, v in self.__dict__.items() if k != "figures"} | {"figures": [f.__dict__ for f in self.figures]},
                indent=2,
                default=str,
            )
        )
        (OUT_DIR / "results.md").write_text(self.markdown())
        return OUT_DIR / "results.md"


# ------------------------------------------------------------------ services


def pg_dsn(db: str = "postgres") -> str:
    return f"host={PG_HOST} port={PG_PORT} user=postgres dbname={db} connect_timeout=5"


def db_url(db: str) -> str:
    return f"postgres://postgres@{PG_HOST}:{PG_PORT}/{db}"


def database_recreate(name: str) -> None:
    """A fresh database every run, so the migrations' seed rows are exactly those of a new deployment."""
    import psycopg

    assert name.startswith(DB_PREFIX), name
    with psycopg.connect(pg_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def redis_claim() -> Any:
    """The benchmark's Redis database, refused unless empty: emptying it afterwards then harms no one."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    size = client.dbsize()
    if size:
        raise SystemExit(f"{REDIS_URL} holds {size} keys; choose an empty database with SECAI_BENCH_REDIS_URL")
    return client


def process_env(database: str) -> dict[str, str]:
    """Settings of every process of the run (this one, gunicorn, the workers)."""
    tmp = OUT_DIR / "run"
    return os.environ.copy() | {
        "DJANGO_SETTINGS_MODULE": "secai.settings.local",
        "DEBUG": "0",  # debug keeps every SQL statement in memory, which would distort figure 6
        "SECRET_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": db_url(database),
        "CELERY_BROKER_URL": REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "MODEL_STORE": str(tmp / "models"),
        "SECAI_VAR_DIR": str(tmp / "var"),
        "SECAI_API_RATE": "off",  # a benchmark client is one token posting far above the default limit
        "PYTHONUNBUFFERED": "1",
    }


def scoring_queues() -> list[str]:
    """The queue score_events is routed to. A deployment's scoring workers consume it alone
    (Procfile); explanations, actions and training have processes of their own, so a scoring
    figure measures scoring, and the latency figure runs an explain worker beside it."""
    from secai.celery import app

    return [app.amqp.router.route({}, "reviews.tasks.score_events")["queue"].name]


def explain_queues() -> list[str]:
    from secai.celery import app

    return [app.amqp.router.route({}, "reviews.tasks.explain_events")["queue"].name]


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Process:
    """A child process in its own process group, logged to OUT_DIR/logs, stopped by stop()."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        logs = OUT_DIR / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = logs / f"{name}.log"
        # Truncated: start_worker looks for " ready." in this run's log, not an earlier run's.
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tree(self) -> list[int]:
        """This process and its descendants (a Celery worker's pool children, gunicorn's workers)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of one process, in kB; empty once it has gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def start_gunicorn(env: dict[str, str], workers: int) -> Process:
    if reachable(WEB_PORT):
        raise SystemExit(f"port {WEB_PORT} is taken; set SECAI_BENCH_PORT (18300-18399)")
    web = Process(
        "gunicorn",
        [str(Path(sys.executable).with_name("gunicorn")), "--config", "gunicorn.conf.py"],
        env | {"SECAI_BIND": f"127.0.0.1:{WEB_PORT}", "WEB_CONCURRENCY": str(workers), "GUNICORN_LOGLEVEL": "warning"},
    )
    deadline = time.monotonic() + 60
    import http.client

    while time.monotonic() < deadline:
        if not web.alive():
            raise SystemExit(f"gunicorn exited with {web.proc.returncode}; see {web.log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", WEB_PORT, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return web
        except OSError:
            pass
        time.sleep(0.3)
    web.stop()
    raise SystemExit(f"gunicorn not ready in 60 s; see {web.log_path}")


def start_worker(env: dict[str, str], name: str, concurrency: int, queues: list[str]) -> Process:
    worker = Process(
        name,
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "secai",
            "worker",
            "--concurrency",
            str(concurrency),
            "--pool",
            "prefork",
            "-Q",
            ",".join(queues),
            "--hostname",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not worker.alive():
            raise SystemExit(f"worker {name} exited with {worker.proc.returncode}; see {worker.log_path}")
        if b" ready." in worker.log_path.read_bytes():
            return worker
        time.sleep(0.3)
    worker.stop()
    raise SystemExit(f"worker {name} not ready in 60 s; see {worker.log_path}")


# ------------------------------------------------------------------ data


def nsl_schema() -> dict[str, str]:
    from reviews.csv_import import infer_schema

    return infer_schema(HISTORY, {"label", "difficulty"})


def nsl_rows(path: Path, schema: dict[str, str], prefix: str) -> tuple[list[dict], list[bool]]:
    from reviews.csv_import import nsl_kdd_layout, read_events

    start = datetime.now(UTC) - timedelta(days=20)
    layout = nsl_kdd_layout(schema, id_prefix=prefix, start=start, spacing=timedelta(seconds=10), labelled=True)
    events, labels = [], []
    for event, label in read_events(path, layout):
        events.append(event)
        labels.append(bool(label))
    return events, labels


def cycled(events: list[dict], count: int, tag: str) -> list[dict]:
    """count rows taken round-robin from events under new external ids (no duplicates)."""
    return [{**events[i % len(events)], "external_id": f"{tag}-{i}"} for i in range(count)]
