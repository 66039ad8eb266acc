"""The learning loop measured end to end. Labelled files are streamed through the REST API to a web
server process, a Celery worker process scores them, simulated reviewers decide the queue through
the service layer, and a training run (training_start, then the train_model task on the worker)
follows every cycle. After each cycle the champion is scored on a fixed test set.

`manage.py simulate` runs `run()` in a process of its own, on a database, broker folder and model
store of its own (see the command), so a simulation never touches the demo's or production's data.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import cycle as round_robin
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db.models import Count
from rest_framework.authtoken.models import Token

from models_registry import ml
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from models_registry.services import training_start
from models_registry.tasks import train_model
from reviews import services as review_services
from reviews.choices import EventStatus, ItemKind, ReviewState, VerdictChoice
from reviews.csv_import import CsvLayout, infer_schema, read_events
from reviews.models import Event, Label, Policy, ReviewItem, Source
from reviews.roles import API_CLIENTS, REVIEWERS
from reviews.services import (
    ItemConflict,
    events_ingest,
    events_sweep_unscored,
    policy_update,
    reason_codes_for,
    review_item_claim,
    review_item_claim_next,
    source_create,
    verdict_submit,
)

# The learning-loop target of the project: 95% of the fully supervised PR AUC from at most 10% of
# the training labels. The report says whether and when a run reached it.
TARGET_PR_AUC_RATIO = 0.95
TARGET_MAX_LABEL_FRACTION = 0.10
FINISHED = (ModelStatus.CHAMPION, ModelStatus.REJECTED, ModelStatus.FAILED, ModelStatus.RETIRED)
IMPORT_BATCH = 5000


class SimulationError(Exception):
    pass


@dataclass
class SimulationConfig:
    source: str
    stream: str
    label_column: str
    out: str
    cycles: int = 5
    history: str | None = None
    test: str | None = None
    test_fraction: float = 0.2
    ignore_columns: list[str] = field(default_factory=list)
    entity_columns: list[str] = field(default_factory=list)
    reviews_per_cycle: int = 500
    reviewer_error: float = 0.0
    reviewers: int = 2
    audit_rate: float = 0.02
    audit_share: float = 0.1
    min_labels_per_class: int | None = None
    min_cold_start_events: int | None = None
    seed: int = 0
    batch: int = 1000
    worker_concurrency: int = 1
    reference: bool = True
    timeout: float = 1800.0
    token: str = ""  # proves to the run that the launcher set up its environment

    @classmethod
    def load(cls, path: Path) -> SimulationConfig:
        return cls(**json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))


# ------------------------------------------------------------------ data


@dataclass
class Rows:
    events: list[dict[str, Any]]  # shaped as the REST API takes them
    labels: list[bool]

    def __len__(self) -> int:
        return len(self.events)

    def slice(self, start: int, stop: int) -> Rows:
        return Rows(self.events[start:stop], self.labels[start:stop])


def _read(path: Path, config: SimulationConfig, schema: dict[str, str], *, prefix: str, start: datetime) -> Rows:
    layout = CsvLayout(
        schema=schema,
        entity_columns=tuple(config.entity_columns),
        label_column=config.label_column,
        start=start,
        spacing=timedelta(seconds=1),
        id_prefix=prefix,
    )
    events, labels = [], []
    for event, label in read_events(path, layout):
        events.append(event)
        labels.append(bool(label))
    return Rows(events, labels)


def _count_rows(path: Path) -> int:
    return sum(1 for _ in read_events(path, CsvLayout(schema={}, id_prefix="count")))


@dataclass
class Data:
    schema: dict[str, str]
    history: Rows
    stream: Rows
    test: Rows
    test_origin: str


def data_load(config: SimulationConfig) -> Data:
    """History, stream and test rows. Event times are synthetic, one second apart, history before
    stream and all in the past: the product's time split then holds out the most recent labels.
    Without a test file the last test_fraction of the stream is held back and never posted."""
    history_path = Path(config.history) if config.history else None
    stream_path = Path(config.stream)
    for path in (history_path, stream_path, Path(config.test) if config.test else None):
        if path is not None and not path.exists():
            raise SimulationError(f"no such file: {path}")
    exclude = {config.label_column, *config.ignore_columns}
    schema = infer_schema(history_path or stream_path, exclude)
    n_history = _count_rows(history_path) if history_path else 0
    n_stream = _count_rows(stream_path)
    first = datetime.now(UTC) - timedelta(seconds=n_history + n_stream + 3600)
    history = _read(history_path, config, schema, prefix="history", start=first) if history_path else Rows([], [])
    stream = _read(stream_path, config, schema, prefix="stream", start=first + timedelta(seconds=n_history))
    if config.test:
        test = _read(Path(config.test), config, schema, prefix="test", start=first)
        origin = f"file {config.test}"
    else:
        n_test = int(round(len(stream) * config.test_fraction))
        if n_test < 1 or n_test >= len(stream):
            raise SimulationError("the stream is too short to hold back a test set; pass --test")
        test = stream.slice(len(stream) - n_test, len(stream))
        stream = stream.slice(0, len(stream) - n_test)
        origin = f"the last {n_test} rows of the stream (never posted)"
    if len(set(test.labels)) < 2:
        raise SimulationError("the test set must hold both classes")
    return Data(schema=schema, history=history, stream=stream, test=test, test_origin=origin)


# ------------------------------------------------------------------ processes


class Processes:
    """The web server and the Celery worker, each in a process group of its own, logging to --out."""

    def __init__(self, out: Path):
        self.out = out
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        with open(self.out / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                cwd=settings.BASE_DIR,
                env=os.environ.copy(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.children[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.out / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def check(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                tail = "\n".join(self.log(name).splitlines()[-20:])
                raise SimulationError(f"the {name} process exited with {proc.returncode}; last lines of {name}.log:\n{tail}")

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, *, timeout: float, what: str, processes: Processes, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        processes.check()
        if time.monotonic() > deadline:
            raise SimulationError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ small statistics


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion; None without observations."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _rounded(metrics: dict[str, Any] | None, digits: int = 4) -> dict[str, Any] | None:
    if metrics is None:
        return None
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in metrics.items()}


# ------------------------------------------------------------------ the run


class Simulation:
    def __init__(self, config: SimulationConfig, stdout=None):
        self.config = config
        self.out = Path(config.out)
        self.stdout = stdout or sys.stdout
        self.rng = random.Random(config.seed)
        self.processes = Processes(self.out)
        self.truth: dict[int, bool] = {}  # event id -> ground truth, for reviewers and for scoring the estimates
        self.report: dict[str, Any] = {}
        self._bundles: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()

    def say(self, message: str) -> None:
        self.stdout.write(f"[{time.monotonic() - self.started:7.1f}s] {message}\n")
        self.stdout.flush()

    # -------------------------------------------------------------- entry point

    def run(self) -> dict[str, Any]:
        config = self.config
        data = data_load(config)
        self.data = data
        self.report = {
            "config": {k: v for k, v in asdict(config).items() if k != "token"},
            "setup": self._setup_description(),
            "machine": {
                "nproc": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
                "scikit_learn": _version("sklearn"),
            },
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": {
                "attributes": len(data.schema),
                "history_rows": len(data.history),
                "history_threats": sum(data.history.labels),
                "stream_rows": len(data.stream),
                "stream_threats": sum(data.stream.labels),
                "test_rows": len(data.test),
                "test_threats": sum(data.test.labels),
                "test_set": data.test_origin,
                "training_pool_rows": len(data.history) + len(data.stream),
            },
            "reference": None,
            "cycles": [],
            "summary": None,
        }
        self.say(
            f"data: {len(data.history)} history rows, {len(data.stream)} stream rows, {len(data.test)} test rows "
            f"({data.test_origin}); {len(data.schema)} attributes"
        )
        try:
            if config.cycles > 0:
                self._prepare()  # the worker and the web server start while the reference is fitted
            if config.reference:
                self.report["reference"] = self._reference()
                self._write()
            if config.cycles > 0:
                self._loop()
        finally:
            self.processes.stop()
        self.report["summary"] = self._summary()
        self.report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.report["elapsed_seconds"] = round(time.monotonic() - self.started, 1)
        self._write()
        return self.report

    def _setup_description(self) -> dict[str, Any]:
        db = settings.DATABASES["default"]
        return {
            "database": f"{db['ENGINE'].rsplit('.', 1)[-1]}:{db['NAME']}",
            "broker": settings.CELERY_BROKER_URL.split("@")[-1],
            "model_store": str(settings.MODEL_STORE),
            "api": "POST /api/v1/events/ on a `manage.py runserver` process (HTTP on 127.0.0.1)",
            "scoring": "a `celery worker` process (queues scoring,training; solo pool at concurrency 1), the score_events task",
            "reviews": "reviews.services.review_item_claim_next / review_item_claim + verdict_submit, in this process",
            "training": "models_registry.services.training_start here, the train_model task (model_train) on the worker",
            "retrain_after_verdicts": "off (0): one training run per cycle, as a schedule would start it",
            # The no-op "enough verdicts?" task each verdict enqueues: sent on a real broker, left out
            # on the filesystem transport (see _loop).
            "verdict_count_checks": "not enqueued" if settings.CELERY_BROKER_URL.startswith("filesystem") else "enqueued",
        }

    # -------------------------------------------------------------- reference

    def _reference(self) -> dict[str, Any]:
        """The default supervised pipeline fitted on every labelled row of history and stream (true
        labels, no time split), scored on the test set: the yardstick for the learning curve."""
        data = self.data
        spec = ml.FeatureSpec.from_schema(data.schema)
        events = data.history.events + data.stream.events
        y = np.array(data.history.labels + data.stream.labels, dtype=int)
        self.say(f"reference: fitting the supervised pipeline on all {len(y)} labelled rows...")
        started = time.monotonic()
        X = ml.frame_from_rows([e["attributes"] for e in events], spec)
        bundle = ml.fit(spec, ml.HIST_GRADIENT_BOOSTING, X, y)
        fit_seconds = time.monotonic() - started
        threshold = Policy._meta.get_field("review_threshold").default
        test_scores = ml.predict_scores(bundle, ml.frame_from_rows([e["attributes"] for e in data.test.events], spec))
        metrics = ml.evaluate(np.array(data.test.labels, dtype=int), test_scores, threshold)
        train_scores = ml.predict_scores(bundle, X)
        benign = y == 0
        reference = {
            "what": "default supervised pipeline (ml.fit, hist_gradient_boosting) on all labelled history and stream rows",
            "train_rows": int(len(y)),
            "train_threats": int(y.sum()),
            "novelty_detector": bundle.get("novelty") is not None,
            "fit_seconds": round(fit_seconds, 1),
            "test": _rounded(metrics),
            # In-sample, so a lower bound: the share of benign training rows at or above the threshold.
            "train_benign_flagged_share": round(float((train_scores[benign] >= threshold).mean()), 4) if benign.any() else None,
        }
        self.say(
            f"reference: PR AUC {metrics['pr_auc']:.4f}, ROC AUC {metrics['roc_auc']:.4f}, "
            f"accuracy at {threshold} {metrics['accuracy_at_threshold']:.4f} ({fit_seconds:.0f} s)"
        )
        return reference

    # -------------------------------------------------------------- the loop

    def _prepare(self) -> None:
        """Migrate the run's database, create the reviewers, the API client, the source with its
        policy and the labelled history, and start the worker and the web server."""
        config = self.config
        started = time.monotonic()
        call_command("migrate", interactive=False, verbosity=0)
        self.say(f"simulation database migrated ({time.monotonic() - started:.0f} s)")
        if Source.objects.filter(name=config.source).exists():
            raise SimulationError(f"source {config.source!r} already exists in the simulation database; use an empty one")
        self.reviewers, client, self.token = self._users()
        self.source = source_create(name=config.source, schema=self.data.schema, description="simulation")
        self.source.api_clients.add(client)
        self.source.reviewers.add(*self.reviewers)
        self.policy = policy_update(
            policy=Policy.objects.get(source=self.source), actor=None, audit_sample_rate=config.audit_rate
        )
        self.reasons = {v: reason_codes_for(verdict=v)[0] for v in VerdictChoice.values}
        if len(self.data.history):
            self._import_history()
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self._start_processes(port)

    def _loop(self) -> None:
        self._wait_processes()
        maybe_retrain = getattr(review_services, "_maybe_retrain", None)
        if maybe_retrain is None:
            self.report["setup"]["verdict_count_checks"] = "enqueued"
        if maybe_retrain is not None and self.report["setup"]["verdict_count_checks"] == "not enqueued":
            # Every verdict enqueues a check "enough new verdicts to retrain?", which this run has
            # switched off (retrain_after_verdicts 0), so each check is a no-op task. kombu's
            # filesystem transport hands a worker about one message per polling interval (1 s), so
            # thousands of them would hold the cycle's training run back for as many seconds.
            review_services._maybe_retrain = lambda source_id: None
        try:
            self._cycles()
        finally:
            if maybe_retrain is not None:
                review_services._maybe_retrain = maybe_retrain

    def _users(self):
        User = get_user_model()
        reviewers = []
        for i in range(1, self.config.reviewers + 1):
            user = User.objects.create_user(username=f"sim-reviewer-{i}")
            user.groups.add(Group.objects.get(name=REVIEWERS))
            reviewers.append(user)
        client = User.objects.create_user(username="sim-client")
        client.groups.add(Group.objects.get(name=API_CLIENTS))
        return reviewers, client, Token.objects.create(user=client).key

    def _import_history(self) -> None:
        history = self.data.history
        self.say(f"importing {len(history)} labelled history rows (origin: import)...")
        for start in range(0, len(history), IMPORT_BATCH):
            part = history.slice(start, start + IMPORT_BATCH)
            events_ingest(source=self.source, rows=part.events, status=EventStatus.HISTORICAL, labels=part.labels)

    def _start_processes(self, port: int) -> None:
        python = sys.executable
        concurrency = self.config.worker_concurrency
        # One task at a time needs no pool of child processes: the solo pool runs it in the worker.
        pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
        self.processes.start(
            "worker",
            [
                python, "-m", "celery", "-A", "secai", "worker", "-Q", "scoring,training", *pool,
                "-n", f"simulation-{os.getpid()}@%h", "-l", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
        )  # fmt: skip
        self.processes.start("web", [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"])

    def _wait_processes(self) -> None:
        _wait(lambda: " ready." in self.processes.log("worker"), timeout=120, what="the worker", processes=self.processes)
        _wait(self._web_ready, timeout=120, what="the web server", processes=self.processes)
        self.say(f"worker and web server ready (API at {self.base}, logs in {self.out})")

    def _web_ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def _cycles(self) -> None:
        config, data = self.config, self.data
        chunks = np.array_split(np.arange(len(data.stream)), config.cycles)
        if len(data.history):
            self._train(cycle=0)
            self._record_initial()
        for cycle, rows in enumerate(chunks, start=1):
            started = time.monotonic()
            chunk = data.stream.slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else Rows([], [])
            ids = self._post(chunk)
            if not ModelVersion.objects.filter(source=self.source, status=ModelStatus.CHAMPION).exists():
                # Cold start: nothing could score these events yet. The first model learns from
                # them, then the sweeper (what beat runs every 30 s) sends them to the worker again.
                self._train(cycle=0)
                self._record_initial()
                events_sweep_unscored(older_than_seconds=0)
            self._wait_scored(ids)
            entry = {"cycle": cycle, "events_posted": len(ids), "scoring": self._scoring_stats(ids)}
            entry["reviews"] = self._review(ids)
            entry["missed_threats"] = self._missed_threats(entry["scoring"], entry["reviews"])
            trained = self._train(cycle=cycle)
            entry["training_run"] = self._model_summary(trained)
            entry.update(self._state())
            entry["seconds"] = round(time.monotonic() - started, 1)
            self.report["cycles"].append(entry)
            self._write()
            self._say_cycle(entry)

    # -------------------------------------------------------------- steps of a cycle

    def _post(self, rows: Rows) -> list[int]:
        ids: list[int] = []
        for start in range(0, len(rows), self.config.batch):
            batch = rows.slice(start, start + self.config.batch)
            body = json.dumps({"source": self.config.source, "events": batch.events}).encode()
            request = urllib.request.Request(
                self.base + "/api/v1/events/",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Token {self.token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as resp:
                    reply = json.load(resp)
            except urllib.error.HTTPError as exc:
                raise SimulationError(f"POST /api/v1/events/ answered {exc.code}: {exc.read()[:500]!r}") from exc
            if reply["duplicates"]:
                raise SimulationError(f"{reply['duplicates']} posted events were reported as duplicates")
            for event, label in zip(reply["events"], batch.labels, strict=True):
                ids.append(event["id"])
                self.truth[event["id"]] = label
        return ids

    def _events(self, ids: list[int]):
        return Event.objects.filter(source=self.source, id__gte=min(ids), id__lte=max(ids))

    def _wait_scored(self, ids: list[int]) -> None:
        if not ids:
            return

        def done() -> bool:
            return not self._events(ids).filter(status=EventStatus.RECEIVED).exists()

        _wait(
            done,
            timeout=self.config.timeout,
            what=f"the worker to score {len(ids)} events",
            processes=self.processes,
            interval=0.5,
        )

    def _scoring_stats(self, ids: list[int]) -> dict[str, Any]:
        wanted = set(ids)
        threshold = self.policy.review_threshold
        rows = [r for r in self._events(ids).values_list("id", "score") if r[0] in wanted]
        audit = ReviewItem.objects.filter(
            source=self.source, kind=ItemKind.AUDIT_SAMPLE, event_id__gte=min(ids), event_id__lte=max(ids)
        ).count()
        below = [i for i, s in rows if s is not None and s < threshold]
        flagged = [i for i, s in rows if s is not None and s >= threshold]
        return {
            "threshold": threshold,
            "flagged": len(flagged),
            "flagged_threats": sum(self.truth[i] for i in flagged),
            "below_threshold": len(below),
            "below_threshold_threats": sum(self.truth[i] for i in below),
            "audit_samples_queued": audit,
        }

    def _decide(self, item: ReviewItem, reviewer, stats: Counter, chunk: tuple[int, int] | None) -> None:
        truth = self.truth.get(item.event_id)
        if truth is None:  # an event this run did not post (cannot happen on an own database)
            raise SimulationError(f"no ground truth for event {item.event_id}")
        mistake = self.rng.random() < self.config.reviewer_error
        says_threat = truth != mistake
        verdict = VerdictChoice.APPROVE if says_threat else VerdictChoice.OVERTURN
        verdict_submit(item=item, reviewer=reviewer, verdict=verdict, reason=self.reasons[verdict])
        kind = "audit" if item.kind == ItemKind.AUDIT_SAMPLE else "flagged"
        stats[f"{kind}_decided"] += 1
        stats[f"{kind}_{verdict}"] += 1
        stats[f"{kind}_true_threats"] += int(truth)
        stats["mistakes"] += int(mistake)
        if kind == "audit" and chunk and chunk[0] <= item.event_id <= chunk[1]:
            stats["audit_this_cycle_decided"] += 1
            stats["audit_this_cycle_said_threat"] += int(says_threat)

    def _review(self, ids: list[int]) -> dict[str, Any]:
        """Spend the cycle's review budget: a share on this cycle's audit samples (a team that never
        looks at them has no missed-threat estimate), the rest on the queue in its own order."""
        config = self.config
        stats: Counter = Counter()
        chunk = (min(ids), max(ids)) if ids else None
        people = round_robin(self.reviewers)
        budget = config.reviews_per_cycle
        if chunk:
            audit_budget = min(budget, int(round(budget * config.audit_share)))
            audit_items = list(
                ReviewItem.objects.filter(
                    source=self.source,
                    kind=ItemKind.AUDIT_SAMPLE,
                    state=ReviewState.OPEN,
                    event_id__gte=chunk[0],
                    event_id__lte=chunk[1],
                ).order_by("id")[:audit_budget]
            )
            for item in audit_items:
                reviewer = next(people)
                try:
                    item = review_item_claim(item=item, reviewer=reviewer)
                except ItemConflict:
                    continue
                self._decide(item, reviewer, stats, chunk)
        while stats["flagged_decided"] + stats["audit_decided"] < budget:
            reviewer = next(people)
            item = review_item_claim_next(reviewer=reviewer, source=self.source)
            if item is None:
                break
            self._decide(item, reviewer, stats, chunk)
        flagged = stats["flagged_decided"]
        return {
            "decided": flagged + stats["audit_decided"],
            "flagged_decided": flagged,
            "flagged_overturned": stats[f"flagged_{VerdictChoice.OVERTURN}"],
            "flagged_truly_benign": flagged - stats["flagged_true_threats"],
            "overturn_rate": round(stats[f"flagged_{VerdictChoice.OVERTURN}"] / flagged, 4) if flagged else None,
            "audit_decided": stats["audit_decided"],
            "audit_said_threat": stats[f"audit_{VerdictChoice.APPROVE}"],
            "audit_this_cycle_decided": stats["audit_this_cycle_decided"],
            "audit_this_cycle_said_threat": stats["audit_this_cycle_said_threat"],
            "reviewer_mistakes": stats["mistakes"],
            "open_items_left": ReviewItem.objects.filter(source=self.source, state=ReviewState.OPEN).count(),
        }

    def _missed_threats(self, scoring: dict[str, Any], reviews: dict[str, Any]) -> dict[str, Any]:
        """What the audit samples of this cycle's events say about the threats below the threshold,
        next to the true number (known here, never in production)."""
        n, k = reviews["audit_this_cycle_decided"], reviews["audit_this_cycle_said_threat"]
        below = scoring["below_threshold"]
        interval = wilson(k, n)
        return {
            "audit_samples_decided": n,
            "audit_samples_said_threat": k,
            "rate_estimate": round(k / n, 4) if n else None,
            "rate_ci95": [round(x, 4) for x in interval] if interval else None,
            "estimate": round(k / n * below, 1) if n else None,
            "estimate_ci95": [round(x * below, 1) for x in interval] if interval else None,
            "actual": scoring["below_threshold_threats"],
            "below_threshold_events": below,
        }

    def _train(self, *, cycle: int) -> ModelVersion:
        model = training_start(source=self.source, triggered_by=f"schedule (simulation cycle {cycle})")
        train_model.delay(model.pk)

        def finished():
            row = ModelVersion.objects.filter(pk=model.pk).only("status").first()
            return row if row is not None and row.status in FINISHED else None

        _wait(
            finished, timeout=self.config.timeout, what=f"training run v{model.version}", processes=self.processes, interval=0.5
        )
        return ModelVersion.objects.get(pk=model.pk)

    # -------------------------------------------------------------- measurements

    def _model_summary(self, model: ModelVersion | None) -> dict[str, Any] | None:
        if model is None:
            return None
        manifest = model.training_manifest or {}
        split = (manifest.get("split") or {}).get("train") or {}
        return {
            "version": model.version,
            "algorithm": model.algorithm or None,
            "status": model.status,
            "reason": (model.status_reason or model.error or "")[:400],
            "labels_fitted": int(manifest.get("train_rows", 0)) if not manifest.get("unsupervised") else 0,
            "labels_fitted_by_origin": split.get("by_origin", {}),
            "holdout_rows": manifest.get("holdout_rows"),
        }

    def _champion_on_test(self) -> tuple[ModelVersion, dict[str, Any], bool]:
        champion = ModelVersion.objects.get(source=self.source, status=ModelStatus.CHAMPION)
        bundle = self._bundles.get(champion.pk)
        if bundle is None:
            bundle = self._bundles[champion.pk] = ml.load(Path(champion.artifact_path), champion.sha256)
        test = self.data.test
        scores = ml.predict_scores(bundle, ml.frame_from_rows([e["attributes"] for e in test.events], ml.bundle_spec(bundle)))
        metrics = ml.evaluate(np.array(test.labels, dtype=int), scores, self.policy.review_threshold)
        return champion, _rounded(metrics), bundle.get("novelty") is not None

    def _state(self) -> dict[str, Any]:
        champion, metrics, novelty = self._champion_on_test()
        by_origin = dict(
            Label.objects.filter(event__source=self.source).values("origin").annotate(n=Count("id")).values_list("origin", "n")
        )
        total = sum(by_origin.values())
        pool = self.report["data"]["training_pool_rows"]
        reference = (self.report.get("reference") or {}).get("test") or {}
        champ = self._model_summary(champion)
        champ["novelty_detector"] = novelty
        return {
            "champion": champ,
            "test": metrics,
            "pr_auc_vs_reference": round(metrics["pr_auc"] / reference["pr_auc"], 4)
            if reference.get("pr_auc") and metrics.get("pr_auc") is not None
            else None,
            "labels": {
                "total": total,
                "by_origin": by_origin,
                "share_of_training_pool": round(total / pool, 4) if pool else None,
            },
        }

    def _record_initial(self) -> None:
        if any(c["cycle"] == 0 for c in self.report["cycles"]):
            return
        entry = {"cycle": 0, "events_posted": 0, "note": "the first champion, before any verdict"}
        entry["training_run"] = self._model_summary(ModelVersion.objects.filter(source=self.source).order_by("-version").first())
        entry.update(self._state())
        self.report["cycles"].append(entry)
        self._write()
        self._say_cycle(entry)

    def _say_cycle(self, entry: dict[str, Any]) -> None:
        test, champ, labels = entry["test"], entry["champion"], entry["labels"]
        parts = [
            f"cycle {entry['cycle']}: champion v{champ['version']} {champ['algorithm']}",
            f"test PR AUC {test['pr_auc']:.4f} accuracy {test['accuracy_at_threshold']:.4f}",
            f"labels {labels['total']} {labels['by_origin']}",
        ]
        reviews = entry.get("reviews")
        if reviews:
            rate = reviews["overturn_rate"]
            parts.append(f"overturn rate {rate:.3f}" if rate is not None else "no flagged item decided")
            missed = entry["missed_threats"]
            if missed["estimate"] is not None:
                parts.append(f"missed threats est. {missed['estimate']:.0f} (actual {missed['actual']})")
        if entry.get("training_run") and entry["cycle"]:
            run = entry["training_run"]
            parts.append(f"run v{run['version']} {run['status']}")
        self.say("; ".join(parts))

    def _summary(self) -> dict[str, Any] | None:
        reference = (self.report.get("reference") or {}).get("test") or {}
        pool = self.report["data"]["training_pool_rows"]
        cycles = self.report["cycles"]
        if not cycles:
            return None
        best = max(cycles, key=lambda c: c["test"]["pr_auc"] or 0)
        out: dict[str, Any] = {
            "final_cycle": cycles[-1]["cycle"],
            "final_pr_auc": cycles[-1]["test"]["pr_auc"],
            "final_labels": cycles[-1]["labels"]["total"],
            "best_pr_auc": best["test"]["pr_auc"],
            "best_pr_auc_cycle": best["cycle"],
        }
        if reference.get("pr_auc"):
            target = TARGET_PR_AUC_RATIO * reference["pr_auc"]
            limit = TARGET_MAX_LABEL_FRACTION * pool
            hit = next((c for c in cycles if (c["test"]["pr_auc"] or 0) >= target and c["labels"]["total"] <= limit), None)
            out["target"] = {
                "pr_auc_at_least": round(target, 4),
                "labels_at_most": int(limit),
                "rule": f"{TARGET_PR_AUC_RATIO:.0%} of the reference PR AUC with at most {TARGET_MAX_LABEL_FRACTION:.0%} of the training pool labelled",
                "reached": hit is not None,
                "first_cycle": hit["cycle"] if hit else None,
                "labels_then": hit["labels"]["total"] if hit else None,
                "pr_auc_then": hit["test"]["pr_auc"] if hit else None,
            }
        return out

    # -------------------------------------------------------------- output

    def _write(self) -> None:
        report = self.report
        path = self.out / "report.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2))
        os.replace(tmp, path)
        if report["cycles"]:
            plot(report, self.out / "simulation.png")


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # a missing module only leaves a blank in the report
        return None


def plot(report: dict[str, Any], path: Path) -> None:
    """Four panels per cycle: the champion on the test set, the overturn rate, the missed-threat
    estimate against the truth, and the labels by origin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cycles = report["cycles"]
    x = [c["cycle"] for c in cycles]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), dpi=80)
    ax = axes[0][0]
    ax.plot(x, [c["test"]["pr_auc"] for c in cycles], "o-", label="PR AUC")
    ax.plot(x, [c["test"]["roc_auc"] for c in cycles], "s--", label="ROC AUC", alpha=0.7)
    ax.plot(x, [c["test"]["accuracy_at_threshold"] for c in cycles], "^-", label="accuracy at threshold")
    reference = (report.get("reference") or {}).get("test") or {}
    if reference.get("pr_auc"):
        ax.axhline(reference["pr_auc"], color="grey", lw=1, label=f"supervised reference PR AUC {reference['pr_auc']:.3f}")
        ax.axhline(
            TARGET_PR_AUC_RATIO * reference["pr_auc"], color="grey", lw=1, ls=":", label=f"{TARGET_PR_AUC_RATIO:.0%} of it"
        )
    for c in cycles:
        if c["champion"]["algorithm"] == ml.ISOLATION_FOREST:
            ax.axvspan(c["cycle"] - 0.5, c["cycle"] + 0.5, color="orange", alpha=0.12, lw=0)
    ax.set_title("champion on the fixed test set (shaded: IsolationForest)")
    ax.set_xlabel("cycle")
    ax.set_ylim(
        max(
            0.0, min(v for c in cycles for v in (c["test"]["pr_auc"], c["test"]["accuracy_at_threshold"]) if v is not None) - 0.05
        ),
        1.0,
    )
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[0][1]
    rated = [c for c in cycles if c.get("reviews") and c["reviews"]["overturn_rate"] is not None]
    ax.plot([c["cycle"] for c in rated], [c["reviews"]["overturn_rate"] for c in rated], "o-", label="overturn rate (verdicts)")
    ax.plot(
        [c["cycle"] for c in rated],
        [c["reviews"]["flagged_truly_benign"] / c["reviews"]["flagged_decided"] for c in rated],
        "x--",
        label="truly benign share (ground truth)",
    )
    ax.set_title("flagged items decided: overturned")
    ax.set_xlabel("cycle")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)

    ax = axes[1][0]
    est = [c for c in cycles if c.get("missed_threats") and c["missed_threats"]["estimate"] is not None]
    if est:
        xs = [c["cycle"] for c in est]
        values = [c["missed_threats"]["estimate"] for c in est]
        low = [v - c["missed_threats"]["estimate_ci95"][0] for v, c in zip(values, est, strict=True)]
        high = [c["missed_threats"]["estimate_ci95"][1] - v for v, c in zip(values, est, strict=True)]
        ax.errorbar(xs, values, yerr=[low, high], fmt="o", capsize=3, label="estimate from audit samples (95% CI)")
    actual = [c for c in cycles if c.get("missed_threats")]
    ax.plot([c["cycle"] for c in actual], [c["missed_threats"]["actual"] for c in actual], "kx", label="actual (ground truth)")
    ax.set_title("threats below the review threshold, per cycle")
    ax.set_xlabel("cycle")
    ax.legend(fontsize=7)

    ax = axes[1][1]
    origins = sorted({o for c in cycles for o in c["labels"]["by_origin"]})
    bottom = np.zeros(len(cycles))
    for origin in origins:
        values = np.array([c["labels"]["by_origin"].get(origin, 0) for c in cycles], dtype=float)
        ax.bar(x, values, bottom=bottom, label=origin)
        bottom += values
    ax.plot(x, [c["champion"]["labels_fitted"] for c in cycles], "k.-", label="fitted by the champion")
    ax.set_title("labels (cumulative)")
    ax.set_xlabel("cycle")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def run(config_path: Path, stdout=None) -> dict[str, Any]:
    """Entry point of the simulation process (`manage.py simulate --run-config FILE`)."""
    config = SimulationConfig.load(config_path)
    if not config.token or os.environ.get("SECAI_SIMULATION_TOKEN") != config.token:
        raise SimulationError("this process was not started by `manage.py simulate` for this run (environment not set up)")
    simulation = Simulation(config, stdout=stdout)
    return simulation.run()
