"""Small constructed data for the model-side tests: a toy source whose threats are known, and model
rows made without training when a test needs only their stored figures."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from models_registry import drift, ml, services
from models_registry.models import ModelVersion
from reviews.choices import EventStatus, LabelOrigin
from reviews.models import Event, Label, Source
from reviews.roles import REVIEWERS
from reviews.services import source_create
from tests.conftest import PASSWORD

TOY_SCHEMA = {"x1": "numeric", "x2": "numeric", "proto": "categorical", "admin": "boolean"}


def login(client, user):
    assert client.login(username=user.username, password=PASSWORD)
    return client


def toy_source(name: str = "toy") -> Source:
    return source_create(name=name, schema=dict(TOY_SCHEMA), reviewers=list(User.objects.filter(groups__name=REVIEWERS)))


def toy_rows(n: int, *, seed: int = 0, shift: float = 0.0) -> tuple[list[dict], np.ndarray]:
    """Attributes and labels where a threat is x1 + 0.3 * noise > 1 (about one row in five): a
    supervised model learns it easily, and the answer is known."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(shift, 1.0, n)
    x2 = rng.normal(0.0, 1.0, n)
    proto = rng.choice(["tcp", "udp", "icmp"], n, p=[0.6, 0.3, 0.1])
    y = (x1 + 0.3 * rng.normal(0, 1, n) > 1.0).astype(int)
    rows = [
        {"x1": float(a), "x2": float(b), "proto": str(c), "admin": bool(i % 7 == 0)}
        for i, (a, b, c) in enumerate(zip(x1, x2, proto, strict=True))
    ]
    return rows, y


def toy_events(
    source: Source,
    n: int,
    *,
    seed: int = 0,
    prefix: str = "e",
    start: datetime | None = None,
    origin: str | None = LabelOrigin.IMPORT,
    status: str = EventStatus.HISTORICAL,
    flip: float = 0.0,
) -> list[Event]:
    """n events one minute apart, labelled with origin (None: unlabelled); flip inverts that share
    of the labels at random."""
    rows, y = toy_rows(n, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    events = Event.objects.bulk_create(
        [
            Event(
                source=source,
                external_id=f"{prefix}-{i}",
                entity=f"host-{i % 13}",
                occurred_at=start + timedelta(minutes=i),
                attributes=attrs,
                status=status,
            )
            for i, attrs in enumerate(rows)
        ]
    )
    if origin is not None:
        flips = rng.random(n) < flip
        Label.objects.bulk_create(
            [
                Label(event=e, is_threat=bool(label) != bool(f), origin=origin)
                for e, label, f in zip(events, y, flips, strict=True)
            ]
        )
    return events


def constructed_report(seed: int = 0, with_champion: bool = True) -> dict:
    """A validation report as training stores it, from constructed scores."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 400)
    cand = np.clip(0.5 * y + rng.normal(0.25, 0.2, 400), 0, 1)
    champ = np.clip(0.3 * y + rng.normal(0.35, 0.25, 400), 0, 1)
    thresholds = {"review": 0.5, "step_up": 0.5, "deny": 0.8}
    report = {
        "threshold": 0.5,
        "thresholds": thresholds,
        "holdout_rows": 400,
        "decision": "promote",
        "reason": "constructed",
        "candidate": ml.evaluate(y, cand, 0.5),
        "curves": {"candidate": ml.curves(y, cand, thresholds)},
        "checks": [{"name": "minimum PR AUC", "passed": True, "detail": "constructed"}],
    }
    if with_champion:
        report["champion"] = ml.evaluate(y, champ, 0.5)
        report["curves"]["champion"] = ml.curves(y, champ, thresholds)
        report["champion_version"] = 1
    return report


def fake_model(
    source: Source, *, version: int = 1, status: str = "candidate", report: dict | None = None, **fields
) -> ModelVersion:
    """A registry row with stored figures and a placeholder file that passes the sha256 check but
    holds no model (enough for pages, monitoring, promotion races; not for scoring)."""
    placeholder = Path(settings.MODEL_STORE) / source.name / f"placeholder-v{version}.skops"
    placeholder.parent.mkdir(parents=True, exist_ok=True)
    placeholder.write_bytes(f"placeholder for {source.name} v{version}".encode())
    defaults = {
        "algorithm": ml.HIST_GRADIENT_BOOSTING,
        "sha256": ml.sha256_of(placeholder),
        "artifact_path": str(placeholder),
        "feature_schema": dict(source.schema),
        "validation_report": report or {},
        "status": status,
        "finished_at": timezone.now(),
    }
    defaults.update(fields)
    return ModelVersion.objects.create(source=source, version=version, **defaults)


def toy_drift_reference(n: int = 4000, seed: int = 0) -> dict:
    """The drift reference a model trained on toy_rows would store, scores being x1's logistic."""
    rows, _ = toy_rows(n, seed=seed)
    spec = ml.FeatureSpec.from_schema(TOY_SCHEMA)
    X = ml.frame_from_rows(rows, spec)
    scores = 1 / (1 + np.exp(-X["x1"].to_numpy()))
    return drift.reference_build(X, numeric=spec.numeric, categorical=spec.categorical, scores=scores, score_basis="constructed")


def damage(model: ModelVersion) -> bytes:
    """Flip bytes in the middle of the file (same size, new content); return the original."""
    path = Path(model.artifact_path)
    original = path.read_bytes()
    middle = len(original) // 2
    path.write_bytes(original[:middle] + bytes(b ^ 0xFF for b in original[middle : middle + 64]) + original[middle + 64 :])
    return original


def second_champion(source, carol) -> ModelVersion:
    """v2: the same trained bundle under its own file, promoted, so v1 becomes the earlier champion."""
    v1 = ModelVersion.objects.get(source=source, status="champion")
    path = Path(v1.artifact_path).with_name("v2-copy.skops")
    shutil.copy(v1.artifact_path, path)
    v2 = ModelVersion.objects.create(
        source=source,
        version=2,
        algorithm=v1.algorithm,
        feature_schema=v1.feature_schema,
        training_manifest=v1.training_manifest,
        artifact_path=str(path),
        sha256=v1.sha256,
        status="candidate",
    )
    return services.model_promote(model=v2, actor=carol, reason="second model")
