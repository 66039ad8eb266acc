"""`manage.py simulate`: the learning loop on a labelled data set, through the real product path.

This process only prepares --out and starts the run in a second `manage.py simulate` process whose
environment points the database, the broker folder and the model store into --out (or at the
--database-url / --broker-url given), so a simulation never writes to the demo's or production's
data. That process starts a web server and a Celery worker with the same environment; see
models_registry/simulation.py."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from models_registry.simulation import SimulationConfig, SimulationError, run

# Files and folders of a previous run in --out that a new run replaces.
_OWN_FILES = ("simulation.sqlite3", "simulation.sqlite3-wal", "simulation.sqlite3-shm", "report.json", "simulation.png")
_OWN_LOGS = ("simulation.log", "worker.log", "web.log")
_OWN_DIRS = ("var", "models")


def _columns(value: str) -> list[str]:
    return [c.strip() for c in value.split(",") if c.strip()]


class Command(BaseCommand):
    help = (
        "Stream a labelled file through the API, let simulated reviewers decide the queue and retrain every "
        "cycle; write report.json and simulation.png to --out."
    )

    def add_arguments(self, parser):
        parser.add_argument("--source", help="name of the source to create (in the simulation's own database)")
        parser.add_argument("--stream", type=Path, help="labelled CSV (.csv or .csv.gz, header row) posted through the API")
        parser.add_argument("--label-column", help="column whose value marks a threat (anything but normal/benign/0/false)")
        parser.add_argument("--out", type=Path, help="folder for the report, the plot, the logs and (by default) the database")
        parser.add_argument(
            "--history", type=Path, help="labelled CSV imported before the stream (origin: import); omit for a cold start"
        )
        parser.add_argument(
            "--test",
            type=Path,
            help="labelled CSV the champion is scored on after every cycle (default: the last --test-fraction of the stream, never posted)",
        )
        parser.add_argument("--test-fraction", type=float, default=0.2)
        parser.add_argument(
            "--cycles",
            type=int,
            default=5,
            help="the stream is posted in this many equal parts, one per cycle (0: only the supervised reference)",
        )
        parser.add_argument("--reviews-per-cycle", type=int, default=500, help="verdicts the reviewers give per cycle")
        parser.add_argument(
            "--reviewer-error", type=float, default=0.0, help="probability that a verdict contradicts the true label"
        )
        parser.add_argument("--reviewers", type=int, default=2)
        parser.add_argument("--audit-rate", type=float, default=0.02, help="the policy's audit_sample_rate")
        parser.add_argument(
            "--audit-share", type=float, default=0.1, help="share of the review budget spent on this cycle's audit samples"
        )
        parser.add_argument(
            "--min-labels-per-class", type=int, help="SECAI_MIN_LABELS_PER_CLASS for this run (default: the installation's)"
        )
        parser.add_argument(
            "--min-cold-start-events",
            type=int,
            help="SECAI_MIN_COLD_START_EVENTS for this run (default: the installation's)",
        )
        parser.add_argument("--ignore-columns", default="", help="comma-separated columns that are not attributes")
        parser.add_argument("--entity-columns", default="", help="comma-separated columns joined into the entity")
        parser.add_argument("--seed", type=int, default=0, help="seed of the reviewers' mistakes")
        parser.add_argument("--batch", type=int, default=1000, help="events per API request")
        parser.add_argument("--worker-concurrency", type=int, default=1)
        parser.add_argument("--no-reference", action="store_true", help="skip fitting the fully supervised reference")
        parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for scoring or a training run")
        parser.add_argument("--database-url", help="an empty database for the run (default: SQLite file in --out)")
        parser.add_argument("--broker-url", help="a broker for the run (default: kombu's filesystem transport in --out)")
        parser.add_argument(
            "--run-config", type=Path, help="(internal) run the simulation described by this file in this process"
        )

    def handle(self, *args, **opts):
        if opts["run_config"]:
            self._run(opts["run_config"])
            return
        missing = [f"--{k.replace('_', '-')}" for k in ("source", "stream", "label_column", "out") if not opts[k]]
        if missing:
            raise CommandError(f"missing {', '.join(missing)}")
        out: Path = opts["out"].resolve()
        config = SimulationConfig(
            source=opts["source"],
            stream=str(opts["stream"].resolve()),
            label_column=opts["label_column"],
            out=str(out),
            cycles=opts["cycles"],
            history=str(opts["history"].resolve()) if opts["history"] else None,
            test=str(opts["test"].resolve()) if opts["test"] else None,
            test_fraction=opts["test_fraction"],
            ignore_columns=_columns(opts["ignore_columns"]),
            entity_columns=_columns(opts["entity_columns"]),
            reviews_per_cycle=opts["reviews_per_cycle"],
            reviewer_error=opts["reviewer_error"],
            reviewers=opts["reviewers"],
            audit_rate=opts["audit_rate"],
            audit_share=opts["audit_share"],
            min_labels_per_class=opts["min_labels_per_class"],
            min_cold_start_events=opts["min_cold_start_events"],
            seed=opts["seed"],
            batch=opts["batch"],
            worker_concurrency=opts["worker_concurrency"],
            reference=not opts["no_reference"],
            timeout=opts["timeout"],
            token=secrets.token_hex(16),
        )
        self._check(config)
        out.mkdir(parents=True, exist_ok=True)
        for name in _OWN_FILES + _OWN_LOGS:
            (out / name).unlink(missing_ok=True)
        for name in _OWN_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        config_path = out / "config.json"
        config.save(config_path)
        env = self._environment(config, out, opts["database_url"], opts["broker_url"])
        argv = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "simulate", "--run-config", str(config_path)]
        # A terminated launcher must not leave the run (and its web server and worker) behind.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        with open(out / "simulation.log", "w") as log:
            proc = subprocess.Popen(
                argv, cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    log.write(line)
                    log.flush()
                    self.stdout.write(line.rstrip("\n"))
                status = proc.wait()
            except BaseException:
                # Interrupted: the run stops its web server and worker when it is terminated.
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
                raise
        if status != 0:
            raise CommandError(f"the simulation failed (exit status {status}); see {out / 'simulation.log'}")
        written = [str(out / name) for name in ("report.json", "simulation.png") if (out / name).exists()]
        self.stdout.write(self.style.SUCCESS(f"written: {', '.join(written)}"))

    def _check(self, config: SimulationConfig) -> None:
        if config.cycles < 0 or config.reviews_per_cycle < 0 or config.reviewers < 1 or config.batch < 1:
            raise CommandError("--cycles and --reviews-per-cycle must be at least 0, --reviewers and --batch at least 1")
        for name in ("reviewer_error", "audit_rate", "audit_share"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise CommandError(f"--{name.replace('_', '-')} must be between 0 and 1")
        if not 0.0 < config.test_fraction < 1.0:
            raise CommandError("--test-fraction must be between 0 and 1")
        for path in (config.stream, config.history, config.test):
            if path and not Path(path).exists():
                raise CommandError(f"no such file: {path}")

    def _environment(
        self, config: SimulationConfig, out: Path, database_url: str | None, broker_url: str | None
    ) -> dict[str, str]:
        settings_module = os.environ.get("DJANGO_SETTINGS_MODULE", "secai.settings.local")
        if settings_module.endswith(".test"):
            # The test settings pin their own database and run Celery eagerly: the run needs neither.
            settings_module = "secai.settings.local"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": database_url or f"sqlite:///{out / 'simulation.sqlite3'}",
            # Never the installation's broker: its workers would receive ids from another database.
            "CELERY_BROKER_URL": broker_url or "filesystem://",
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "SECAI_VAR_DIR": str(out / "var"),
            "MODEL_STORE": str(out / "models"),
            # One training run per cycle, started by the simulation as a schedule would start it.
            "SECAI_RETRAIN_AFTER_VERDICTS": "0",
            "SECAI_SIMULATION_TOKEN": config.token,
            "PYTHONUNBUFFERED": "1",
        }
        if config.min_labels_per_class is not None:
            env["SECAI_MIN_LABELS_PER_CLASS"] = str(config.min_labels_per_class)
        if config.min_cold_start_events is not None:
            env["SECAI_MIN_COLD_START_EVENTS"] = str(config.min_cold_start_events)
        return env

    def _run(self, config_path: Path) -> None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            run(config_path, stdout=self.stdout)
        except SimulationError as exc:
            raise CommandError(str(exc)) from exc
