"""Scoring with the champion model of a source. The model is loaded once per worker process and
reloaded when the champion changes (one small query per batch tells)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_registry import ml
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion

logger = logging.getLogger(__name__)

_cache: dict[int, tuple[int, str, dict[str, Any]]] = {}  # source_id -> (version id, sha256, bundle)
_lock = threading.Lock()


@dataclass
class ScoreOutcome:
    model_version_id: int
    scores: np.ndarray
    actions: list[str]
    flagged: list[bool]
    explanations: list[Any]


def champion_bundle(source_id: int) -> tuple[int, dict[str, Any]] | None:
    """The champion's (id, bundle); if its file fails the integrity check, keep the last good one."""
    champion = (
        ModelVersion.objects.filter(source_id=source_id, status=ModelStatus.CHAMPION)
        .values("id", "artifact_path", "sha256")
        .first()
    )
    with _lock:
        cached = _cache.get(source_id)
        if champion is None:
            return None
        if cached and cached[0] == champion["id"] and cached[1] == champion["sha256"]:
            return cached[0], cached[2]
        try:
            bundle = ml.load(Path(champion["artifact_path"]), champion["sha256"])
        except ml.ModelIntegrityError:
            logger.exception("champion model %s failed its integrity check", champion["id"])
            if cached:
                return cached[0], cached[2]
            raise
        _cache[source_id] = (champion["id"], champion["sha256"], bundle)
        return champion["id"], bundle


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def score_rows(*, source_id: int, rows: list[dict[str, Any]], policy) -> ScoreOutcome | None:
    loaded = champion_bundle(source_id)
    if loaded is None:
        return None
    version_id, bundle = loaded
    X = ml.frame_from_rows(rows, ml.bundle_spec(bundle))
    scores = ml.predict_scores(bundle, X)
    actions = [policy.action_for(float(s)) for s in scores]
    flagged = [bool(s >= policy.review_threshold) for s in scores]
    explanations: list[Any] = [None] * len(rows)
    flagged_idx = [i for i, f in enumerate(flagged) if f]
    if flagged_idx:
        # Explanations cost one prediction per attribute, so they are computed only for the
        # events a reviewer will look at.
        per_event = ml.explain(bundle, X.iloc[flagged_idx].reset_index(drop=True), scores[flagged_idx])
        for i, expl in zip(flagged_idx, per_event, strict=True):
            explanations[i] = expl
    return ScoreOutcome(model_version_id=version_id, scores=scores, actions=actions, flagged=flagged, explanations=explanations)
