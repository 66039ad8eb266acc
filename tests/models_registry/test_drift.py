"""Population stability index on distributions where the answer is known."""

import math

import numpy as np
import pandas as pd
import pytest

from models_registry import drift


def test_psi_of_known_shares():
    expected = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)
    assert drift.psi([0.25] * 4, [0.25] * 4) == 0.0
    # Symmetric in its arguments, and finite when a bin is empty on one side.
    assert drift.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(drift.psi([0.9, 0.1], [0.5, 0.5]))
    assert math.isfinite(drift.psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


def test_same_distribution_is_stable_and_a_shifted_one_is_not():
    rng = np.random.default_rng(0)
    ref = drift.numeric_reference(rng.normal(0, 1, 50_000))
    same = drift.psi(ref["shares"], drift.numeric_shares(ref, rng.normal(0, 1, 50_000)))
    assert same < 0.01
    # For two unit normals a mean shift d gives a J-divergence (PSI with infinitely many bins) of
    # d^2; ten decile bins capture a little less of it.
    shifted = drift.psi(ref["shares"], drift.numeric_shares(ref, rng.normal(0.5, 1, 50_000)))
    assert 0.18 < shifted < 0.25
    big = drift.psi(ref["shares"], drift.numeric_shares(ref, rng.normal(1.0, 1, 50_000)))
    assert big > 0.8


def test_numeric_bins_collapse_for_flags_and_keep_missing_apart():
    values = np.array([0.0] * 80 + [1.0] * 20 + [np.nan] * 10)
    ref = drift.numeric_reference(values)
    assert ref["edges"] == [0.0, 1.0]
    # bins: <= 0, (0, 1], > 1, missing
    assert ref["shares"] == pytest.approx([80 / 110, 20 / 110, 0.0, 10 / 110])
    assert drift.bin_labels(ref) == ["<= 0", "(0, 1]", "> 1", "(missing)"]
    all_missing = drift.numeric_shares(ref, np.array([np.nan] * 5))
    assert all_missing.tolist() == [0, 0, 0, 1]


def test_categorical_unseen_values_share_the_other_bin():
    ref = drift.categorical_reference(np.array(["tcp"] * 60 + ["udp"] * 30 + [None] * 10, dtype=object))
    assert ref["categories"] == ["tcp", "udp"]
    shares = drift.categorical_shares(ref, np.array(["tcp", "gre", "gre", None], dtype=object))
    assert shares.tolist() == [0.25, 0.0, 0.5, 0.25]  # tcp, udp, other, missing
    assert drift.psi(ref["shares"], shares) > 0.5


def test_drift_compare_reports_the_drifting_attribute():
    rng = np.random.default_rng(1)
    n = 5000
    X_ref = pd.DataFrame({"stable": rng.normal(0, 1, n), "moving": rng.normal(0, 1, n), "proto": rng.choice(["a", "b"], n)})
    ref = drift.reference_build(
        X_ref, numeric=["stable", "moving"], categorical=["proto"], scores=rng.random(n), score_basis="test"
    )
    X_new = pd.DataFrame({"stable": rng.normal(0, 1, n), "moving": rng.normal(2, 1, n), "proto": rng.choice(["a", "b"], n)})
    result = drift.drift_compare(ref, X_new, rng.random(n))
    assert result["attribute_psi"]["moving"] > 1.0
    assert result["attribute_psi"]["stable"] < 0.02 and result["attribute_psi"]["proto"] < 0.01
    assert result["score_psi"] < 0.02
    assert len(result["score_bins"]["reference"]) == len(result["score_bins"]["labels"])


def test_score_bin_labels_near_1_are_distinct():
    # Scores of a confident model crowd near 1: decile edges that differ only in the fifth digit or
    # later must not all print as 1.
    scores = np.r_[np.linspace(0, 0.9, 600), 1 - np.logspace(-7, -3, 400)]
    ref = drift.numeric_reference(scores)
    labels = drift.bin_labels(ref)
    assert len(set(labels)) == len(labels)
    assert "(1, 1]" not in labels
    from models_registry import plots

    png = plots.monitoring_scores({"labels": labels, "reference": ref["shares"], "recent": ref["shares"]})
    assert png.startswith(b"\x89PNG")
