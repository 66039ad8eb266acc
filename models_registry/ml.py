"""The machine-learning boundary: build, fit, save, load, score and explain. Everything else in the
project passes plain rows (dicts of attributes) and a schema to this module and gets numbers back."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.impute import SimpleImputer
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder
from sklearn.utils.validation import validate_data
from threadpoolctl import ThreadpoolController

ISOLATION_FOREST = "isolation_forest"
HIST_GRADIENT_BOOSTING = "hist_gradient_boosting"

# The supervised model only knows the threats it was shown; an attack unlike every labelled one
# gets a low probability. So a supervised bundle also carries an IsolationForest fitted on the
# benign training rows, and an event that this forest finds anomalous (anomaly score at or above
# NOVELTY_CUT, Liu et al.'s own boundary, the same one the cold-start model uses) scores at least
# its anomaly score: a novel event goes to a reviewer instead of being cleared. The cost is the
# share of ordinary benign events the forest calls anomalous (about 6% on NSL-KDD's training
# distribution). Fewer than NOVELTY_MIN_BENIGN benign rows describe "ordinary" too poorly to use.
NOVELTY_CUT = 0.5
NOVELTY_MIN_BENIGN = 500

# Types a model file may contain. Loading anything else is refused even when the sha256 matches,
# so a tampered store that also rewrote the database row still cannot make us instantiate
# arbitrary classes.
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
_TRUSTED_EXACT = {"functools.partial"}  # HistGradientBoosting keeps a partial of its own loss function


_threadpools: ThreadpoolController | None = None


def _one_openmp_thread():
    """The same as threadpool_limits(limits=1, user_api="openmp"), but the scan of the loaded
    native libraries is done once per process instead of on every call: that scan costs a few
    milliseconds, more than the prediction itself for one row."""
    global _threadpools
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api="openmp")


class ModelIntegrityError(Exception):
    """The artifact on disk is not the one the registry recorded, or holds untrusted types."""


@dataclass(frozen=True)
class FeatureSpec:
    numeric: list[str]  # numeric and boolean attributes, as floats
    categorical: list[str]  # categorical attributes, as strings

    @classmethod
    def from_schema(cls, schema: dict[str, str]) -> FeatureSpec:
        # Free-text attributes are kept on the event and shown to reviewers but not modelled.
        numeric = [k for k, t in schema.items() if t in ("numeric", "boolean")]
        categorical = [k for k, t in schema.items() if t == "categorical"]
        return cls(numeric=numeric, categorical=categorical)

    @property
    def columns(self) -> list[str]:
        return self.categorical + self.numeric


def frame_from_rows(rows: list[dict[str, Any]], spec: FeatureSpec) -> pd.DataFrame:
    """Rows of attributes to a DataFrame of model inputs; a missing attribute becomes NaN.

    Column by column, letting numpy convert a whole column at once (None becomes NaN, booleans
    0 and 1); only a column numpy refuses (a stray string) goes value by value."""
    data: dict[str, Any] = {}
    for col in spec.categorical:
        values = [r.get(col) for r in rows]
        data[col] = np.array([v if type(v) is str else _as_category(v) for v in values], dtype=object)
    for col in spec.numeric:
        values = [r.get(col) for r in rows]
        try:
            data[col] = np.array(values, dtype=np.float64)
        except (TypeError, ValueError, OverflowError):
            data[col] = np.array([_as_number(v) for v in values], dtype=np.float64)
    return pd.DataFrame(data, columns=spec.columns)


def _as_category(value: Any) -> Any:
    if value is None:
        return np.nan
    return str(value)


def _as_number(value: Any) -> float:
    if value is None:
        return np.nan
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def build_pipeline(spec: FeatureSpec, algorithm: str, random_state: int = 0) -> Pipeline:
    n_cat = len(spec.categorical)
    if algorithm == HIST_GRADIENT_BOOSTING:
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
            max_categories=250,  # HistGradientBoosting bins a categorical feature into at most 255 bins
        )
        pre = ColumnTransformer(
            [("cat", encoder, spec.categorical), ("num", "passthrough", spec.numeric)],
            verbose_feature_names_out=False,
        )
        model = HistGradientBoostingClassifier(
            categorical_features=[i < n_cat for i in range(len(spec.columns))],
            class_weight="balanced",
            max_iter=200,
            random_state=random_state,
        )
    elif algorithm == ISOLATION_FOREST:
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1, max_categories=250
        )
        pre = ColumnTransformer(
            [
                ("cat", encoder, spec.categorical),
                ("num", SimpleImputer(strategy="median", keep_empty_features=True), spec.numeric),
            ],
            verbose_feature_names_out=False,
        )
        model = IsolationForest(n_estimators=200, random_state=random_state)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    return Pipeline([("pre", pre), ("model", model)])


def fit(
    spec: FeatureSpec,
    algorithm: str,
    X: pd.DataFrame,
    y: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    novelty: bool = True,
) -> dict[str, Any]:
    """Fit a pipeline and return the bundle that is saved as one artifact. sample_weight (the
    labels' weights) multiplies the balanced class weights of the supervised model. novelty adds
    the benign-novelty detector to a supervised bundle (see NOVELTY_CUT)."""
    pipeline = build_pipeline(spec, algorithm)
    detector = None
    # Single-threaded for the same reason as predict_scores: training shares the machine with
    # scoring workers, and OpenMP threads that spin-wait for a busy core slow everything down.
    with _one_openmp_thread():
        if algorithm == HIST_GRADIENT_BOOSTING:
            if y is None or len(np.unique(y)) < 2:
                raise ValueError("supervised training needs labels of both classes")
            if sample_weight is not None:
                pipeline.fit(X, y, model__sample_weight=sample_weight)
            else:
                pipeline.fit(X, y)
            benign = X[np.asarray(y) == 0]
            if novelty and len(benign) >= NOVELTY_MIN_BENIGN:
                detector = build_pipeline(spec, ISOLATION_FOREST)
                detector.fit(benign)
        else:
            pipeline.fit(X)
    return {
        "algorithm": algorithm,
        "pipeline": pipeline,
        "novelty": detector,
        "categorical": list(spec.categorical),
        "numeric": list(spec.numeric),
        "reference": _reference_values(spec, X),
    }


def _reference_values(spec: FeatureSpec, X: pd.DataFrame) -> dict[str, Any]:
    """A typical value per feature (mode or median): the baseline an explanation compares against."""
    ref: dict[str, Any] = {}
    for col in spec.categorical:
        mode = X[col].dropna().mode()
        ref[col] = str(mode.iloc[0]) if len(mode) else None
    for col in spec.numeric:
        median = X[col].median()
        ref[col] = None if pd.isna(median) else float(median)
    return ref


def bundle_spec(bundle: dict[str, Any]) -> FeatureSpec:
    return FeatureSpec(numeric=list(bundle["numeric"]), categorical=list(bundle["categorical"]))


def _forest_score_samples(pipeline: Pipeline, X: pd.DataFrame) -> np.ndarray:
    """pipeline.score_samples(X) of an IsolationForest pipeline, computed the same way (the same
    trees, leaves and sums, in the same order) without the per-tree joblib call scikit-learn makes:
    that call copies the configuration and warning filters for each of the 200 trees, 35 ms per
    prediction whatever the number of rows, two thirds of a batch of 1,000 and nearly all of one
    event. tests/models_registry/test_forest_scores.py checks it equals score_samples exactly; a
    forest without the expected fitted attributes goes through score_samples."""
    forest = pipeline[-1]
    try:
        trees, features = forest.estimators_, forest.estimators_features_
        path_lengths, average_lengths = forest._decision_path_lengths, forest._average_path_length_per_tree
        denominator = len(trees) * _average_path_length([forest._max_samples])[0]
        subsample = forest._max_features != forest.n_features_in_
    except AttributeError:
        return pipeline.score_samples(X)
    Xt = validate_data(
        forest,
        pipeline[:-1].transform(X),
        accept_sparse="csr",
        dtype=np.float32,
        reset=False,
        ensure_all_finite=False,
    )
    depths = np.zeros(Xt.shape[0], order="f")
    for tree, used, lengths, averages in zip(trees, features, path_lengths, average_lengths, strict=True):
        leaves = tree.apply(Xt[:, used] if subsample else Xt, check_input=False)
        depths += lengths[leaves] + averages[leaves] - 1.0
    scores = 2 ** (-np.divide(depths, denominator, out=np.ones_like(depths), where=denominator != 0))
    return -scores


def predict_scores(bundle: dict[str, Any], X: pd.DataFrame) -> np.ndarray:
    """Risk scores in [0, 1], higher meaning more likely a threat.

    For IsolationForest this is the anomaly score s(x) = 2^(-E[h(x)]/c(n)) of Liu et al., which
    sklearn's score_samples returns negated: near 1 is anomalous, below 0.5 is ordinary. For a
    supervised bundle it is the threat probability, raised to the benign-novelty detector's anomaly
    score where that is at or above NOVELTY_CUT (bundles saved without a detector: the probability).
    """
    pipeline = bundle["pipeline"]
    # One thread per prediction: a scoring worker is one of several processes on the machine, and
    # OpenMP's thread start-up dominates on batches of a few thousand rows when cores are shared.
    with _one_openmp_thread():
        if bundle["algorithm"] == ISOLATION_FOREST:
            return np.clip(-_forest_score_samples(pipeline, X), 0.0, 1.0)
        scores = pipeline.predict_proba(X)[:, 1]
        detector = bundle.get("novelty")
        if detector is not None and len(X):
            anomaly = np.clip(-_forest_score_samples(detector, X), 0.0, 1.0)
            scores = np.maximum(scores, np.where(anomaly >= NOVELTY_CUT, anomaly, 0.0))
        return scores


def explain(bundle: dict[str, Any], X: pd.DataFrame, base_scores: np.ndarray, top_k: int = 5) -> list[list[dict[str, Any]]]:
    """Per-event attributions: how much the score drops (or rises) when one attribute is replaced
    by its typical training value. Positive means the attribute pushed this event's score up."""
    spec = bundle_spec(bundle)
    reference = bundle["reference"]
    n, k = len(X), len(spec.columns)
    if n == 0:
        return []
    # Only the cells that differ from the typical value are perturbed: replacing a value by itself
    # changes nothing, so its delta is 0 without a prediction (on NSL-KDD most attributes of most
    # events are at their typical value). The perturbed rows of every attribute go in one
    # prediction, since tree ensembles pay a fixed cost per call and per tree.
    base = np.asarray(base_scores, dtype=float)
    perturbed = np.repeat(base[:, None], k, axis=1)  # (event, attribute); unperturbed cells keep the base score
    copies, targets = [], []
    for j, col in enumerate(spec.columns):
        ref = reference.get(col)
        values = X[col]
        if ref is None:
            differs = values.notna().to_numpy()
            value = np.nan
        else:
            value = np.float64(ref) if col in spec.numeric else ref
            differs = (values != value).to_numpy()
        rows = np.flatnonzero(differs)
        if rows.size:
            X_mod = X.iloc[rows].copy()
            X_mod[col] = value
            copies.append(X_mod)
            targets.append((j, rows))
    if copies:
        scores = predict_scores(bundle, pd.concat(copies, ignore_index=True))
        at = 0
        for j, rows in targets:
            perturbed[rows, j] = scores[at : at + rows.size]
            at += rows.size
    deltas = base[:, None] - perturbed
    out: list[list[dict[str, Any]]] = []
    for i in range(n):
        order = np.argsort(-np.abs(deltas[i]))[:top_k]
        out.append(
            [
                {
                    "attribute": spec.columns[j],
                    "contribution": round(float(deltas[i, j]), 4),
                    "typical": reference.get(spec.columns[j]),
                }
                for j in order
                if abs(deltas[i, j]) > 1e-6
            ]
        )
    return out


def evaluate(y_true: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | None]:
    y_true = np.asarray(y_true).astype(int)
    pred = scores >= threshold
    positives = int(y_true.sum())
    negatives = int(len(y_true) - positives)
    tp = int((pred & (y_true == 1)).sum())
    fp = int((pred & (y_true == 0)).sum())
    both = positives > 0 and negatives > 0
    return {
        "n": int(len(y_true)),
        "positives": positives,
        "roc_auc": float(roc_auc_score(y_true, scores)) if both else None,
        "pr_auc": float(average_precision_score(y_true, scores)) if both else None,
        "accuracy_at_threshold": float((pred == (y_true == 1)).mean()) if len(y_true) else None,
        "precision_at_threshold": tp / (tp + fp) if (tp + fp) else None,
        "recall_at_threshold": tp / positives if positives else None,
        "fpr_at_threshold": fp / negatives if negatives else None,
        "threshold": threshold,
    }


def _thin(*arrays: np.ndarray, max_points: int) -> list[list[float]]:
    """At most max_points evenly spaced points of a curve, always keeping both ends."""
    n = len(arrays[0])
    keep = np.unique(np.r_[np.linspace(0, n - 1, min(n, max_points)).round().astype(int), n - 1]) if n else np.array([], int)
    return [[round(float(a[i]), 5) for i in keep] for a in arrays]


def curves(y_true: np.ndarray, scores: np.ndarray, thresholds: dict[str, float], max_points: int = 200) -> dict[str, Any]:
    """What the validation report plots, computed once at training time and stored as JSON: the PR
    and ROC curves, a reliability table (calibration), the confusion matrix at each named threshold
    and score histograms per class."""
    y_true = np.asarray(y_true).astype(int)
    scores = np.asarray(scores, dtype=float)
    precision, recall, _ = precision_recall_curve(y_true, scores)
    fpr, tpr, _ = roc_curve(y_true, scores)
    edges = np.linspace(0.0, 1.0, 11)
    which = np.clip(np.digitize(scores, edges[1:-1]), 0, 9)
    calibration = []
    for b in range(10):
        members = which == b
        if members.any():
            calibration.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "mean_score": round(float(scores[members].mean()), 5),
                    "threat_share": round(float(y_true[members].mean()), 5),
                    "n": int(members.sum()),
                }
            )
    confusion = {}
    for name, t in thresholds.items():
        pred = scores >= t
        confusion[name] = {
            "threshold": float(t),
            "tp": int((pred & (y_true == 1)).sum()),
            "fp": int((pred & (y_true == 0)).sum()),
            "fn": int((~pred & (y_true == 1)).sum()),
            "tn": int((~pred & (y_true == 0)).sum()),
        }
    hist_edges = np.linspace(0.0, 1.0, 21)
    return {
        "n": int(len(y_true)),
        "positives": int(y_true.sum()),
        "pr": dict(zip(("recall", "precision"), _thin(recall, precision, max_points=max_points), strict=True)),
        "roc": dict(zip(("fpr", "tpr"), _thin(fpr, tpr, max_points=max_points), strict=True)),
        "calibration": calibration,
        "confusion": confusion,
        "histogram": {
            "edges": [round(float(e), 3) for e in hist_edges],
            "threat": np.histogram(np.clip(scores[y_true == 1], 0, 1), hist_edges)[0].tolist(),
            "benign": np.histogram(np.clip(scores[y_true == 0], 0, 1), hist_edges)[0].tolist(),
        },
    }


def save(bundle: dict[str, Any], path: Path) -> str:
    """Write the bundle with skops (no pickle) atomically and return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    sio.dump(bundle, tmp)
    os.replace(tmp, path)
    return sha256_of(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, expected_sha256: str) -> None:
    """Raise ModelIntegrityError unless the file is readable and has the expected sha256."""
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read model file {path}: {exc}") from exc
    if actual != expected_sha256:
        raise ModelIntegrityError(f"sha256 mismatch for {path}: expected {expected_sha256}, found {actual}")


def load(path: Path, expected_sha256: str) -> dict[str, Any]:
    """Load a bundle after checking its sha256 and that it holds only scikit-learn/numpy types."""
    verify(path, expected_sha256)
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not (t.startswith(_TRUSTED_PREFIXES) or t in _TRUSTED_EXACT)]
    if foreign:
        raise ModelIntegrityError(f"model file {path} holds types outside scikit-learn/numpy: {foreign}")
    return sio.load(path, trusted=untrusted)
