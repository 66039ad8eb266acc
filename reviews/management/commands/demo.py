"""`make demo`: the whole loop on NSL-KDD with the embedded defaults (SQLite, filesystem broker).

Creates the demo users and the nsl-kdd source, imports the labelled history, trains model v1,
starts a Celery worker, Celery beat and the web server, streams the live events through the REST
API, waits until the worker has scored them, and keeps serving until interrupted."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from actions.choices import ExecutorKind
from actions.models import ActionType, Executor
from actions.services import action_type_save, executor_save
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from reviews.choices import EventStatus
from reviews.csv_import import infer_schema, nsl_kdd_layout, read_events
from reviews.models import Event, ReviewItem, Source
from reviews.roles import ADMINS, API_CLIENTS, REVIEWERS
from reviews.services import policy_update, source_create

SOURCE = "nsl-kdd"
DATA = Path(settings.BASE_DIR) / "data" / "nsl-kdd"
HISTORY = DATA / "KDDTrain+_20Percent.csv.gz"
LIVE = DATA / "KDDTest+.csv.gz"
NOT_ATTRIBUTES = {"label", "difficulty"}
# A process that dies sooner than this after starting is failing to start, not crashing: it would
# only fail again, so the demo stops and says where to look.
RESTART_AFTER_SECONDS = 10.0
DEMO_AUDIT_SAMPLE_RATE = 0.02


@dataclass
class Child:
    argv: list[str]
    process: subprocess.Popen
    started: float


class Command(BaseCommand):
    help = "Set up the demo and run web, worker and beat until interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--batch", type=int, default=1000, help="events per API request")
        parser.add_argument("--limit", type=int, default=0, help="post only the first N live events (0: all)")
        parser.add_argument("--no-serve", action="store_true", help="stop after streaming instead of serving")

    def handle(self, *args, **opts):
        self.children: dict[str, Child] = {}
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        # A shell that starts a job in the background sets SIGINT to "ignore" for it, which Python
        # keeps; restore Ctrl-C (or SIGINT to the process group) as the way to stop everything.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._run(opts)
        except KeyboardInterrupt:
            pass
        finally:
            self._stop_children()

    # ------------------------------------------------------------------ steps

    def _run(self, opts):
        passwords = self._users()
        source = self._source()
        self._executors(source)
        if not Event.objects.filter(source=source, status=EventStatus.HISTORICAL).exists():
            self.stdout.write("Importing the labelled history (NSL-KDD KDDTrain+_20Percent, 25,192 rows)...")
            start = datetime.now(UTC) - timedelta(days=30)
            call_command(
                "import_events",
                source=SOURCE,
                file=HISTORY,
                label_column="label",
                ignore_columns="difficulty",
                entity_columns="protocol_type,service",
                start=start.isoformat(),
                stdout=self.stdout,
            )
        if not ModelVersion.objects.filter(source=source, status=ModelStatus.CHAMPION).exists():
            self.stdout.write("Training model v1 on the labelled history...")
            call_command("train", source=SOURCE, stdout=self.stdout)
        token = self._token()
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "secai",
                "worker",
                "-Q",
                "scoring,explain,training,actions",
                "-c",
                "2",
                "--loglevel",
                "INFO",
                "-n",
                f"demo-{os.getpid()}@%h",
            ],
            log_dir,
        )
        self._start("beat", [sys.executable, "-m", "celery", "-A", "secai", "beat", "--loglevel", "INFO"], log_dir)
        self._start("web", [sys.executable, "manage.py", "runserver", f"127.0.0.1:{opts['port']}", "--noreload"], log_dir)
        base = f"http://127.0.0.1:{opts['port']}"
        self._wait_ready(base)
        self._stream(base, token, opts["batch"], opts["limit"])
        self._wait_scored(source)
        self._summary(base, passwords, token, log_dir)
        if opts["no_serve"]:
            return
        self._supervise(log_dir)

    def _executors(self, source: Source) -> None:
        """Give the demo's actions a log-only executor, so an approved action is visibly executed
        (a line in var/log/worker.log) without any receiving system; an admin can point an action
        at a webhook executor instead (README, "Actions and autonomy")."""
        executor = Executor.objects.filter(name="demo-log").first()
        if executor is None:
            executor = executor_save(actor=None, name="demo-log", kind=ExecutorKind.LOG)
        for action_type in ActionType.objects.filter(source=source, executor__isnull=True).exclude(name="allow"):
            action_type_save(actor=None, action_type=action_type, executor=executor)

    def _users(self) -> dict[str, str]:
        User = get_user_model()
        passwords = {}
        for username, group, superuser in (
            ("admin", ADMINS, True),
            ("reviewer1", REVIEWERS, False),
            ("reviewer2", REVIEWERS, False),
        ):
            user, _ = User.objects.get_or_create(username=username)
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = superuser
            user.is_superuser = superuser
            user.save()
            user.groups.add(Group.objects.get(name=group))
            if group == REVIEWERS:
                self._source().reviewers.add(user)
            passwords[username] = password
        return passwords

    def _token(self) -> str:
        User = get_user_model()
        client, created = User.objects.get_or_create(username="demo-client")
        if created:
            client.set_unusable_password()
            client.save()
        client.groups.add(Group.objects.get(name=API_CLIENTS))
        self._source().api_clients.add(client)
        return Token.objects.get_or_create(user=client)[0].key

    def _source(self) -> Source:
        source = Source.objects.filter(name=SOURCE).first()
        if source is None:
            source = source_create(
                name=SOURCE,
                schema=infer_schema(HISTORY, NOT_ATTRIBUTES),
                description="NSL-KDD network connection records (Tavallaee et al. 2009)",
            )
            # A few events below the review threshold go to reviewers as audit samples, so the
            # monitoring page's missed-threat estimate has something to show.
            policy_update(policy=source.policy, actor=None, audit_sample_rate=DEMO_AUDIT_SAMPLE_RATE)
        return source

    def _start(self, name: str, argv: list[str], log_dir: Path) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "secai.settings.local")}
        with open(log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR, env=env, start_new_session=True
            )
        self.children[name] = Child(argv=argv, process=process, started=time.monotonic())
        self.stdout.write(f"started {name} (pid {process.pid}, log {log_dir / (name + '.log')})")

    def _supervise(self, log_dir: Path, *, rounds: int | None = None) -> None:
        """Keep web, worker and beat running until interrupted: one that dies (a crash, an
        out-of-memory kill, `kill -9`) is started again. Nothing is lost meanwhile: events and
        claims are in the database, and the sweeper re-sends events whose scoring message died
        with the worker. rounds bounds the loop for tests."""
        while rounds is None or rounds > 0:
            time.sleep(1)
            for name, child in list(self.children.items()):
                code = child.process.poll()
                if code is None:
                    continue
                up = time.monotonic() - child.started
                log = log_dir / f"{name}.log"
                if up < RESTART_AFTER_SECONDS:
                    raise CommandError(f"{name} stopped {up:.0f} s after it started (exit code {code}); see {log}")
                self.stdout.write(
                    self.style.WARNING(f"{name} stopped (exit code {code}) after {up:.0f} s; starting it again (log {log})")
                )
                self._start(name, child.argv, log_dir)
            if rounds is not None:
                rounds -= 1

    def _stop_children(self) -> None:
        for child in self.children.values():
            if child.process.poll() is None:
                child.process.terminate()
        for child in self.children.values():
            try:
                child.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.process.kill()

    def _wait_ready(self, base: str) -> None:
        for _ in range(120):
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        raise CommandError("the web server did not become ready; see var/log/web.log")

    def _stream(self, base: str, token: str, batch: int, limit: int) -> None:
        layout = nsl_kdd_layout(self._source().schema, id_prefix="live", start=None, spacing=timedelta(seconds=1), labelled=False)
        events = [event for event, _ in read_events(LIVE, layout)]
        if limit:
            events = events[:limit]
        # One second apart, the last one now: KDDTest+'s 22,544 rows span the last six and a quarter
        # hours, none of them in the future.
        now = datetime.now(UTC)
        for i, event in enumerate(events):
            event["occurred_at"] = (now - timedelta(seconds=len(events) - 1 - i)).isoformat()
        self.stdout.write(
            f"Streaming {len(events)} live events (NSL-KDD KDDTest+) through POST /api/v1/events/ in batches of {batch}..."
        )
        accepted = duplicates = 0
        started = time.monotonic()
        for start in range(0, len(events), batch):
            body = json.dumps({"source": SOURCE, "events": events[start : start + batch]}).encode()
            request = urllib.request.Request(
                base + "/api/v1/events/",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
            )
            with urllib.request.urlopen(request, timeout=120) as resp:
                reply = json.load(resp)
            accepted += reply["accepted"]
            duplicates += reply["duplicates"]
        elapsed = time.monotonic() - started
        self.stdout.write(f"  posted {len(events)} events in {elapsed:.1f}s: {accepted} accepted, {duplicates} duplicates")

    def _wait_scored(self, source: Source) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            waiting = Event.objects.filter(source=source, status=EventStatus.RECEIVED).count()
            if waiting == 0:
                break
            self.stdout.write(f"  waiting for the worker: {waiting} events not yet scored")
            time.sleep(3)
        counts = {
            s: Event.objects.filter(source=source, status=s).count()
            for s in (EventStatus.CLEARED, EventStatus.QUEUED, EventStatus.DECIDED, EventStatus.RECEIVED)
        }
        self.stdout.write(
            f"  scored by the worker: {counts['cleared']} cleared, {counts['queued']} queued for review, {counts['decided']} decided, {counts['received']} still waiting"
        )
        self.stdout.write(f"  open review items: {ReviewItem.objects.filter(state='open').count()}")

    def _summary(self, base, passwords, token, log_dir) -> None:
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"SecAI Review is running at {base}/"))
        for user, password in passwords.items():
            role = "admin" if user == "admin" else "reviewer"
            self.stdout.write(f"  {role:8} login: {user} / {password}")
        self.stdout.write(f"API token: {token}")
        self.stdout.write(f"  try: curl -H 'Authorization: Token {token}' '{base}/api/v1/events/?status=queued&page_size=5'")
        self.stdout.write(f"  API docs: {base}/api/v1/docs/   logs: {log_dir}")
        self.stdout.write(
            f"Approved actions are executed by the log-only executor demo-log: grep 'action executed' {log_dir / 'worker.log'}"
        )
        self.stdout.write("Press Ctrl-C to stop web, worker and beat.")
