"""What `make test` runs: the suite on PostgreSQL (with the Redis + real-worker integration tests)
when those services answer, then the database-facing tests again on SQLite. Without the services
the PostgreSQL part is skipped and said so plainly; with CI=true a missing service is a failure."""

import os
import socket
import subprocess
import sys


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    pg, redis = reachable(5432), reachable(6379)
    missing = [name for name, ok in (("PostgreSQL at 127.0.0.1:5432", pg), ("Redis at 127.0.0.1:6379", redis)) if not ok]
    if missing and ci:
        print(f"CI=true but not reachable: {', '.join(missing)}", file=sys.stderr)
        return 2
    pytest = [sys.executable, "-m", "pytest"]
    status = 0
    if pg:
        print("== suite on PostgreSQL" + ("" if redis else " (Redis missing: integration tests will be skipped)"), flush=True)
        env = {**os.environ, "SECAI_TEST_DB": "postgres"}
        status = subprocess.call(pytest, env=env)
    else:
        print(
            f"== SKIPPED: every PostgreSQL, Redis and real-worker test, because {', '.join(missing)} is not reachable", flush=True
        )
    print("== the review and API tests again on SQLite (the embedded default of make demo)", flush=True)
    env = {**os.environ, "SECAI_TEST_DB": "sqlite"}
    # Claims, verdicts, ingestion and scoring are where SQLite and PostgreSQL differ (locking,
    # compare-and-set, bulk paths, the delivery outbox), and so does how a database refuses
    # out-of-range input; the model and browser tests do not depend on the database.
    targets = ["tests/reviews", "tests/actions", "tests/test_roles_matrix.py", "tests/api/test_bad_input.py"] if pg else ["tests"]
    sqlite_status = subprocess.call([*pytest, *targets, "-m", "not integration and not postgres_only"], env=env)
    if missing:
        print(f"== NOTE: skipped tests needing {', '.join(missing)}", flush=True)
    return status or sqlite_status


if __name__ == "__main__":
    sys.exit(main())
