"""Scoring with the champion model of a source. The model is loaded once per worker process and
reloaded when the champion changes (one small query per batch tells). A model file that fails its
sha256 check is never used: scoring continues with the last good champion."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_registry import ml, services
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from models_registry.selectors import previous_champions

logger = logging.getLogger(__name__)

# source_id -> (version id, sha256, bundle) of the model this process scores with: the champion,
# or the last good champion while the champion's file fails its check.
_cache: dict[int, tuple[int, str, dict[str, Any]]] = {}
# source_id -> (champion id, sha256, file size and mtime) of a champion whose file was refused, so
# that each batch does not hash a bad file again; a changed file (restored) is checked again.
_refused: dict[int, tuple[int, str, tuple[int, int] | None]] = {}
_lock = threading.Lock()


@dataclass
class ScoreOutcome:
    model_version_id: int
    scores: np.ndarray
    actions: list[str]
    flagged: list[bool]


def _file_signature(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _last_good(source_id: int, exclude_pk: int) -> tuple[int, str, dict[str, Any]] | None:
    """The most recently promoted earlier champion whose file passes the check."""
    for model in previous_champions(source_id=source_id, exclude_pk=exclude_pk).only("id", "artifact_path", "sha256"):
        try:
            return model.id, model.sha256, ml.load(Path(model.artifact_path), model.sha256)
        except ml.ModelIntegrityError:
            logger.exception("earlier champion %s failed its integrity check too", model.id)
    return None


def champion_bundle(source_id: int) -> tuple[int, dict[str, Any]] | None:
    """The (id, bundle) to score with. A champion whose file fails the sha256 check is refused:
    the process keeps the model it has loaded, or else loads the last good champion, and the
    failure is recorded for the admins. None when no model can score (the events wait)."""
    champion = (
        ModelVersion.objects.filter(source_id=source_id, status=ModelStatus.CHAMPION)
        .values("id", "artifact_path", "sha256")
        .first()
    )
    if champion is None:
        return None
    with _lock:
        cached = _cache.get(source_id)
        if cached and cached[0] == champion["id"] and cached[1] == champion["sha256"]:
            return cached[0], cached[2]
        refusal = (champion["id"], champion["sha256"], _file_signature(champion["artifact_path"]))
        if _refused.get(source_id) != refusal:
            try:
                bundle = ml.load(Path(champion["artifact_path"]), champion["sha256"])
            except ml.ModelIntegrityError as exc:
                _refused[source_id] = refusal
                fallback = cached or _last_good(source_id, exclude_pk=champion["id"])
                logger.error("champion model %s refused: %s", champion["id"], exc)
                fallback_version = (
                    ModelVersion.objects.filter(pk=fallback[0]).values_list("version", flat=True).first() if fallback else None
                )
                services.model_integrity_failed(
                    model_id=champion["id"],
                    error=str(exc),
                    scoring_with=f"v{fallback_version}" if fallback_version else "nothing: events wait unscored",
                )
                if fallback is None:
                    return None
                _cache[source_id] = fallback
                return fallback[0], fallback[2]
            _refused.pop(source_id, None)
            _cache[source_id] = (champion["id"], champion["sha256"], bundle)
            services.model_integrity_restored(model_id=champion["id"])
            return champion["id"], bundle
        return (cached[0], cached[2]) if cached else None


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _refused.clear()


def score_rows(*, source_id: int, rows: list[dict[str, Any]], policy) -> ScoreOutcome | None:
    """Scores and proposed actions of one source's rows with its champion (no explanations: those
    are computed after the batch commits, on the explain queue, by explain_events)."""
    loaded = champion_bundle(source_id)
    if loaded is None:
        return None
    version_id, bundle = loaded
    X = ml.frame_from_rows(rows, ml.bundle_spec(bundle))
    scores = ml.predict_scores(bundle, X)
    actions = policy.actions_for(scores)
    flagged = (scores >= policy.review_threshold).tolist()
    return ScoreOutcome(model_version_id=version_id, scores=scores, actions=actions, flagged=flagged)


# (version id, sha256) -> bundle of models that explain events scored by a model that is no longer
# the champion of its source; a few at most, since events are explained within seconds of scoring.
_explainers: dict[tuple[int, str], dict[str, Any]] = {}


def version_bundle(model_version_id: int) -> dict[str, Any] | None:
    """The bundle of one model version, checked against its sha256; None if it cannot be loaded."""
    row = ModelVersion.objects.filter(pk=model_version_id).values("id", "source_id", "artifact_path", "sha256").first()
    if row is None or not row["artifact_path"]:
        return None
    with _lock:
        cached = _cache.get(row["source_id"])
        if cached and cached[0] == row["id"] and cached[1] == row["sha256"]:
            return cached[2]
        key = (row["id"], row["sha256"])
        if key in _explainers:
            return _explainers[key]
    try:
        bundle = ml.load(Path(row["artifact_path"]), row["sha256"])
    except (ml.ModelIntegrityError, OSError):
        logger.exception("model %s cannot explain its events: its file is missing or fails its check", model_version_id)
        return None
    with _lock:
        if len(_explainers) >= 4:
            _explainers.pop(next(iter(_explainers)))
        _explainers[key] = bundle
    return bundle


def explain_events(event_ids: list[int]) -> int:
    """Store the per-event explanation (which attributes pushed the score up or down) of the scored
    events among event_ids that have none yet, with the model that scored each; return how many.

    Explanations cost one prediction per attribute, many times a score, so scoring leaves them to
    this function: run after the batch commits on the explain queue, and by the item page for an
    event the queue has not reached yet. Idempotent: an explanation is written only where none is.
    """
    from reviews.models import Event

    rows = list(
        Event.objects.filter(id__in=event_ids, explanation__isnull=True, score__isnull=False, model_version__isnull=False)
        .order_by("id")
        .values("id", "attributes", "score", "model_version_id")
    )
    by_model: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_model.setdefault(row["model_version_id"], []).append(row)
    written = 0
    for version_id, group in by_model.items():
        bundle = version_bundle(version_id)
        if bundle is None:
            continue
        X = ml.frame_from_rows([r["attributes"] for r in group], ml.bundle_spec(bundle))
        per_event = ml.explain(bundle, X, np.asarray([r["score"] for r in group], dtype=float))
        for row, expl in zip(group, per_event, strict=True):
            written += Event.objects.filter(pk=row["id"], explanation__isnull=True).update(explanation=expl)
    return written
