"""scripts/nsl_kdd_batch.py, the README's way to make a batch for curl."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from reviews.validation import validate_batch
from tests.conftest import ROOT, nsl_schema


@pytest.mark.parametrize("offset", [0, 20000])
def test_the_batch_is_valid_and_happened_in_the_last_minutes_not_the_next_hours(offset):
    before = datetime.now(UTC)
    out = subprocess.run(
        [sys.executable, "scripts/nsl_kdd_batch.py", "--count", "50", "--offset", str(offset)],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    body = json.loads(out)
    assert body["source"] == "nsl-kdd" and len(body["events"]) == 50
    assert body["events"][0]["external_id"] == f"curl-{offset}"
    times = [datetime.fromisoformat(e["occurred_at"]) for e in body["events"]]
    assert before - timedelta(minutes=2) < min(times) and max(times) <= datetime.now(UTC)
    clean, errors = validate_batch(body["events"], nsl_schema())
    assert not errors and len(clean) == 50
