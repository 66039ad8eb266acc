"""`manage.py simulate` end to end on a small NSL-KDD slice: a web server and a Celery worker process
on the run's own SQLite database and filesystem broker, reviewers deciding through the services,
one training run per cycle. It needs no PostgreSQL or Redis (the run brings its own database and
broker), but it starts real processes, so it runs with the integration tests."""

from __future__ import annotations

import csv
import gzip
import json
from io import StringIO
from itertools import islice
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import NSL_HISTORY, NSL_LIVE

pytestmark = pytest.mark.integration


def _slice(source: Path, target: Path, start: int, count: int) -> Path:
    with gzip.open(source, "rt", newline="") as fh, gzip.open(target, "wt", newline="") as out:
        reader, writer = csv.reader(fh), csv.writer(out)
        writer.writerow(next(reader))
        writer.writerows(islice(reader, start, start + count))
    return target


def test_simulation_learns_from_verdicts_and_switches_to_the_supervised_model(tmp_path):
    # 80 labelled rows are fewer than the 50 per class supervised training needs, so the source
    # starts with an IsolationForest (allowed from 50 events in this run; the default minimum is
    # 200); the reviewers' verdicts then make a supervised model possible.
    history = _slice(NSL_HISTORY, tmp_path / "history.csv.gz", 10_000, 80)
    stream = _slice(NSL_HISTORY, tmp_path / "stream.csv.gz", 0, 1600)
    test = _slice(NSL_LIVE, tmp_path / "test.csv.gz", 0, 300)
    out = tmp_path / "run"
    stdout = StringIO()

    call_command(
        "simulate",
        source="nsl-kdd",
        history=history,
        stream=stream,
        test=test,
        label_column="label",
        ignore_columns="difficulty",
        cycles=2,
        reviews_per_cycle=150,
        reviewer_error=0.05,
        min_labels_per_class=50,
        min_cold_start_events=50,
        audit_rate=0.05,
        out=out,
        stdout=stdout,
    )

    report = json.loads((out / "report.json").read_text())
    assert {"config", "setup", "machine", "data", "reference", "cycles", "summary"} <= set(report)
    assert report["data"] == {
        "attributes": 41,
        "history_rows": 80,
        "history_threats": report["data"]["history_threats"],
        "stream_rows": 1600,
        "stream_threats": report["data"]["stream_threats"],
        "test_rows": 300,
        "test_threats": report["data"]["test_threats"],
        "test_set": f"file {test}",
        "training_pool_rows": 1680,
    }
    assert 0.5 < report["reference"]["test"]["pr_auc"] <= 1.0

    cycles = report["cycles"]
    assert [c["cycle"] for c in cycles] == [0, 1, 2]
    for c in cycles:
        assert {"pr_auc", "roc_auc", "accuracy_at_threshold"} <= set(c["test"])
        assert 0.0 <= c["test"]["pr_auc"] <= 1.0 and 0.0 <= c["test"]["accuracy_at_threshold"] <= 1.0
        assert {"version", "algorithm", "labels_fitted"} <= set(c["champion"])
    for c in cycles[1:]:
        assert c["events_posted"] == 800
        assert 0 < c["reviews"]["decided"] <= 150
        assert 0.0 <= c["reviews"]["overturn_rate"] <= 1.0
        missed = c["missed_threats"]
        assert {"estimate", "estimate_ci95", "actual", "audit_samples_decided"} <= set(missed)
        assert missed["actual"] <= missed["below_threshold_events"]
        assert c["training_run"]["status"] in ("champion", "rejected")

    # Labels grow every cycle, by origin: the import stays, verdicts (and audit samples) are added.
    totals = [c["labels"]["total"] for c in cycles]
    assert totals[0] == 80 and totals[0] < totals[1] < totals[2], totals
    assert cycles[0]["labels"]["by_origin"] == {"import": 80}
    assert cycles[1]["labels"]["by_origin"]["verdict"] < cycles[2]["labels"]["by_origin"]["verdict"]

    # Cold start first, the supervised model once the verdicts make enough labels of both classes.
    assert cycles[0]["champion"]["algorithm"] == "isolation_forest"
    assert cycles[-1]["champion"]["algorithm"] == "hist_gradient_boosting"
    assert cycles[-1]["champion"]["labels_fitted"] > 0

    # The events went through a real worker process, and training ran there too.
    worker_log = (out / "worker.log").read_text()
    assert "Task reviews.tasks.score_events" in worker_log and "Task models_registry.tasks.train_model" in worker_log
    assert (out / "simulation.sqlite3").exists()
    png = (out / "simulation.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert "cycle 2: champion" in stdout.getvalue()
