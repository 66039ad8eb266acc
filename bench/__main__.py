"""`make bench` (python -m bench): the six performance figures of issue 6 in one run, each next
to its raw limit measured in the same run, with its target and whether it is met.

PostgreSQL at 127.0.0.1:5432 (databases SECAI_BENCH_DB_PREFIX_main and _console, dropped and
created here), Redis at SECAI_BENCH_REDIS_URL (refused unless empty, emptied afterwards), gunicorn
on 127.0.0.1:SECAI_BENCH_PORT and real Celery worker processes. Results go to var/bench/.
Choose sections with ONLY=ingestion,scoring,latency,console,retraining,memory (or --only).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

SECTIONS = ("ingestion", "scoring", "latency", "retraining", "memory", "console")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=os.environ.get("ONLY", ""), help="comma-separated: " + ",".join(SECTIONS))
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {','.join(SECTIONS)}")

    from bench import harness

    started = time.perf_counter()
    results = harness.Results(
        started=f"{datetime.now(UTC):%Y-%m-%d %H:%M}", machine=harness.machine(), load_start=harness.loadavg()
    )
    m = results.machine
    harness.say(f"SecAI Review benchmark: {', '.join(chosen)}")
    harness.say(f"{m['cpus']} CPU(s) {m['cpu_model']}, {m['kernel']}, load average {results.load_start}")
    redis = harness.redis_claim()
    db = f"{harness.DB_PREFIX}_main"
    harness.database_recreate(db)
    env = harness.process_env(db)
    os.environ.update(env)  # this process too: the same database, broker and settings as its children

    import django

    django.setup()
    from bench import sections

    web_workers = harness.env_int("SECAI_BENCH_WEB_WORKERS", 3)
    ctx = sections.Context(db=db, env=env, results=results, redis=redis, web_workers=web_workers)
    try:
        sections.setup(ctx)
        if {"ingestion", "latency"} & set(chosen):
            ctx.web = harness.start_gunicorn(env, web_workers)
        for name in SECTIONS:
            if name in chosen:
                t = time.perf_counter()
                getattr(sections, name)(ctx)
                harness.say(f"{name} done in {time.perf_counter() - t:.0f} s")
    finally:
        if ctx.web is not None:
            ctx.web.stop()
        redis.flushdb()  # it was empty when the run began
        results.load_end = harness.loadavg()
        results.finished = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        results.seconds = time.perf_counter() - started
        path = results.write()
    print(results.markdown())
    harness.say(f"written to {path} and {path.with_suffix('.json')}")
    return 0 if all(f.met is not False for f in results.figures) else 1


if __name__ == "__main__":
    sys.exit(main())
