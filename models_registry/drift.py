"""Population stability index (PSI) of scores and attributes. Reference histograms are taken from the
training data when a model is trained and stored in its manifest; recent events are binned the same
way and compared with them. Plain numpy: no database, no model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# An empty bin would make PSI infinite; both histograms are floored at this share, then renormalised.
EPS = 1e-4
QUANTILES = np.linspace(0.1, 0.9, 9)  # decile edges: ten bins of the reference, plus one for missing
MAX_CATEGORIES = 20  # categories beyond the most frequent ones share one "other" bin
OTHER = "(other)"
MISSING = "(missing)"
REFERENCE_ROWS = 20_000  # enough for stable deciles; more only makes manifests slower to build


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float], eps: float = EPS) -> float:
    """PSI = sum over bins of (actual - expected) * ln(actual / expected), on shares that sum to one.
    0 means the same distribution; by convention below 0.1 is stable and above 0.25 a major shift."""
    e = np.clip(np.asarray(expected, dtype=float), eps, None)
    a = np.clip(np.asarray(actual, dtype=float), eps, None)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_reference(values: np.ndarray | pd.Series) -> dict[str, Any]:
    """Decile edges of the non-missing values and the share of rows in each bin (the last bin holds
    the missing values). Edges are observed values (inverted CDF, no interpolation) and repeated
    ones collapse, so a 0/1 flag gets the bins "0" and "1", not ten bins of invented fractions."""
    arr = np.asarray(values, dtype=float)
    present = arr[~np.isnan(arr)]
    edges = np.unique(np.quantile(present, QUANTILES, method="inverted_cdf")).tolist() if len(present) else []
    ref = {"kind": "numeric", "edges": [float(e) for e in edges]}
    ref["shares"] = numeric_shares(ref, arr).tolist()
    return ref


def numeric_shares(ref: dict[str, Any], values: np.ndarray | pd.Series) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    edges = np.asarray(ref["edges"], dtype=float)
    counts = np.zeros(len(edges) + 2)
    missing = np.isnan(arr)
    # side="left": bin i holds edges[i-1] < x <= edges[i], the convention np.quantile's edges need
    # so that a value equal to an edge falls in the same bin for reference and recent data.
    bins = np.searchsorted(edges, arr[~missing], side="left")
    np.add.at(counts, bins, 1)
    counts[-1] = missing.sum()
    return counts / max(len(arr), 1)


def categorical_reference(values: np.ndarray | pd.Series) -> dict[str, Any]:
    series = pd.Series(values, dtype=object)
    present = series[series.notna()].astype(str)
    top = present.value_counts().index[:MAX_CATEGORIES].tolist()
    ref = {"kind": "categorical", "categories": [str(c) for c in top]}
    ref["shares"] = categorical_shares(ref, series).tolist()
    return ref


def categorical_shares(ref: dict[str, Any], values: np.ndarray | pd.Series) -> np.ndarray:
    series = pd.Series(values, dtype=object)
    index = {c: i for i, c in enumerate(ref["categories"])}
    counts = np.zeros(len(index) + 2)  # the categories, then "other", then missing
    missing = series.isna()
    counts[-1] = missing.sum()
    for value, n in series[~missing].astype(str).value_counts().items():
        counts[index.get(value, len(index))] += n
    return counts / max(len(series), 1)


def shares_for(ref: dict[str, Any], values: np.ndarray | pd.Series) -> np.ndarray:
    return numeric_shares(ref, values) if ref["kind"] == "numeric" else categorical_shares(ref, values)


def bin_labels(ref: dict[str, Any]) -> list[str]:
    if ref["kind"] == "categorical":
        return [*ref["categories"], OTHER, MISSING]
    edges = ref["edges"]
    if not edges:
        return ["all", MISSING]
    digits = edge_digits(edges)
    labels = [f"<= {edges[0]:.{digits}g}"]
    labels += [f"({lo:.{digits}g}, {hi:.{digits}g}]" for lo, hi in zip(edges, edges[1:], strict=False)]
    labels.append(f"> {edges[-1]:.{digits}g}")
    return [*labels, MISSING]


def edge_digits(edges: list[float], least: int = 4) -> int:
    """The fewest significant digits (at least `least`) that print every edge distinctly: edges
    crowded near 1 (scores of 0.99987 and 0.99994) would otherwise all read 1."""
    for digits in range(least, 18):
        if len({f"{e:.{digits}g}" for e in edges}) == len(edges):
            return digits
    return 17


def reference_build(
    X: pd.DataFrame, *, numeric: list[str], categorical: list[str], scores: np.ndarray, score_basis: str, seed: int = 0
) -> dict[str, Any]:
    """The drift reference of a model: histograms of each modelled attribute over its training rows
    and of its scores (on score_basis, recorded so a reader knows which rows they came from)."""
    if len(X) > REFERENCE_ROWS:
        X = X.sample(n=REFERENCE_ROWS, random_state=seed)
    attributes: dict[str, Any] = {}
    for col in numeric:
        attributes[col] = numeric_reference(X[col].to_numpy())
    for col in categorical:
        attributes[col] = categorical_reference(X[col].to_numpy())
    return {
        "rows": len(X),
        "attributes": attributes,
        "score": numeric_reference(np.asarray(scores, dtype=float)),
        "score_rows": len(scores),
        "score_basis": score_basis,
    }


def drift_compare(reference: dict[str, Any], X: pd.DataFrame, scores: np.ndarray) -> dict[str, Any]:
    """PSI of recent scores and of every referenced attribute present in X."""
    score_ref = reference["score"]
    recent_scores = numeric_shares(score_ref, np.asarray(scores, dtype=float))
    per_attribute: dict[str, float] = {}
    for name, ref in reference.get("attributes", {}).items():
        if name in X.columns:
            per_attribute[name] = round(psi(ref["shares"], shares_for(ref, X[name].to_numpy())), 6)
    return {
        "score_psi": round(psi(score_ref["shares"], recent_scores), 6),
        "attribute_psi": per_attribute,
        "score_bins": {
            "labels": bin_labels(score_ref),
            "reference": [round(float(v), 6) for v in score_ref["shares"]],
            "recent": [round(float(v), 6) for v in recent_scores],
        },
    }
