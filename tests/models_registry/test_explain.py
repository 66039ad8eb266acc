"""ml.explain perturbs only the cells that differ from the typical value; its attributions must be
those of perturbing every attribute of every event, on every kind of model and attribute."""

import numpy as np
import pandas as pd
import pytest

from models_registry import ml

SPEC = ml.FeatureSpec(numeric=["bytes", "count", "admin"], categorical=["proto", "service"])


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        rows.append(
            {
                # zero most of the time (the typical value), as in connection logs
                "bytes": float(rng.choice([0, 0, 0, rng.integers(1, 10_000)])),
                "count": None if rng.random() < 0.1 else float(rng.integers(0, 5)),
                "admin": bool(rng.random() < 0.2),
                "proto": rng.choice(["tcp", "tcp", "udp", "icmp"]),
                "service": None if rng.random() < 0.1 else rng.choice(["http", "http", "ftp", "ssh"]),
            }
        )
    return ml.frame_from_rows(rows, SPEC)


def _every_cell(bundle, X: pd.DataFrame, base: np.ndarray) -> np.ndarray:
    """The definition: the score drop when each attribute of each event is set to its typical value."""
    deltas = np.zeros((len(X), len(SPEC.columns)))
    for j, col in enumerate(SPEC.columns):
        ref = bundle["reference"].get(col)
        X_mod = X.copy()
        X_mod[col] = np.nan if ref is None else (np.float64(ref) if col in SPEC.numeric else ref)
        deltas[:, j] = base - ml.predict_scores(bundle, X_mod)
    return deltas


@pytest.mark.parametrize("algorithm", [ml.ISOLATION_FOREST, "hist_gradient_boosting"])
def test_attributions_equal_perturbing_every_attribute(algorithm):
    X = _frame(600, seed=1)
    y = ((X["bytes"] > 5_000) | (X["proto"] == "icmp")).to_numpy() if algorithm != ml.ISOLATION_FOREST else None
    bundle = ml.fit(SPEC, algorithm, X, y)
    # events with values training never saw: an unseen category, a missing attribute everywhere
    live = pd.concat([_frame(150, seed=2), ml.frame_from_rows([{"proto": "sctp"}, {}], SPEC)], ignore_index=True)
    base = ml.predict_scores(bundle, live)

    got = ml.explain(bundle, live, base, top_k=len(SPEC.columns))
    expected = _every_cell(bundle, live, base)

    at_typical = 0
    for i, attributions in enumerate(got):
        shown = {a["attribute"]: a["contribution"] for a in attributions}
        for j, col in enumerate(SPEC.columns):
            if abs(expected[i, j]) > 1e-6:
                assert shown.get(col) == round(float(expected[i, j]), 4), (i, col)
            else:
                assert col not in shown, (i, col)
                at_typical += 1
    # the shortcut was taken: many cells sit at their typical value and moved nothing
    assert at_typical > len(live)
