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
    explanations: list[Any]


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
