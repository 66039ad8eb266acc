"""The validation gate's statistical decisions on constructed scores where the right answer is known."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from models_registry import gate


def labels(n=600, prevalence=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(n) < prevalence).astype(int)


def scores_with_signal(y, strength, seed):
    """Scores in [0, 1] whose separation of the classes grows with strength."""
    rng = np.random.default_rng(seed)
    return 1 / (1 + np.exp(-(strength * (y - 0.5) * 2 + rng.normal(0, 1, len(y)))))


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300), 1)  # many ties
    assert gate.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    rows = gate._average_precision_rows(np.vstack([y, y[::-1]]), np.vstack([s, s[::-1]]))
    assert rows == pytest.approx([average_precision_score(y, s), average_precision_score(y[::-1], s[::-1])], abs=1e-12)


def test_clearly_better_candidate_is_promoted():
    y = labels()
    champ = scores_with_signal(y, 0.5, seed=1)
    cand = scores_with_signal(y, 2.5, seed=2)
    result = gate.gate_decide(y=y, cand=cand, champ=champ, threshold=0.5, min_pr_auc=0.3, max_fpr=None)
    assert result["decision"] == "promote", result["reason"]
    assert result["bootstrap"]["delta_pr_auc"]["low"] > 0  # significantly better, not just not worse
    assert all(c["passed"] for c in result["checks"])


def test_candidate_slightly_worse_on_noise_is_not_rejected():
    # The same model with a little noise added: a small, insignificant loss of PR AUC.
    y = labels()
    champ = scores_with_signal(y, 1.5, seed=1)
    cand = np.clip(champ + np.random.default_rng(3).normal(0, 0.02, len(y)), 0, 1)
    assert gate.average_precision(y, cand) < gate.average_precision(y, champ)
    result = gate.gate_decide(y=y, cand=cand, champ=champ, threshold=0.5, min_pr_auc=0.3, max_fpr=None)
    assert result["decision"] == "promote", result["reason"]
    ci = result["bootstrap"]["delta_pr_auc"]
    assert ci["low"] < 0 <= ci["high"]


def test_clearly_worse_candidate_is_rejected_with_the_interval():
    y = labels()
    champ = scores_with_signal(y, 2.5, seed=1)
    cand = scores_with_signal(y, 0.5, seed=2)
    result = gate.gate_decide(
        y=y, cand=cand, champ=champ, threshold=0.5, min_pr_auc=0.0, max_fpr=None, champion_label="champion v4"
    )
    assert result["decision"] == "reject"
    assert result["bootstrap"]["delta_pr_auc"]["high"] < 0
    assert "significantly worse PR AUC than champion v4" in result["reason"] and "95% CI" in result["reason"]


def test_same_ranking_with_more_false_positives_is_rejected_on_fpr():
    # A monotone shift keeps the ranking (so PR AUC is identical) but puts many more benign events
    # over the operating threshold: the false-positive check, not the PR AUC one, must catch it.
    y = labels()
    champ = scores_with_signal(y, 1.5, seed=1)
    cand = np.clip(champ + 0.15, 0, 1)
    result = gate.gate_decide(y=y, cand=cand, champ=champ, threshold=0.5, min_pr_auc=0.0, max_fpr=None)
    assert result["decision"] == "reject"
    failed = [c["name"] for c in result["checks"] if not c["passed"]]
    assert failed == ["false-positive rate not significantly higher than the champion"]
    assert "significantly higher false-positive rate at 0.5" in result["reason"]


def test_minimums_apply_even_without_a_champion():
    y = labels()
    weak = scores_with_signal(y, 0.1, seed=5)
    result = gate.gate_decide(y=y, cand=weak, champ=None, threshold=0.5, min_pr_auc=0.8, max_fpr=None)
    assert result["decision"] == "reject" and "below the minimum 0.800" in result["reason"]
    assert result["bootstrap"] is None
    strong = scores_with_signal(y, 2.0, seed=5)
    fpr = gate.fpr_at(y, strong, 0.5)
    assert fpr > 0.01
    assert gate.gate_decide(y=y, cand=strong, champ=None, threshold=0.5, min_pr_auc=0.8, max_fpr=None)["decision"] == "promote"
    capped = gate.gate_decide(y=y, cand=strong, champ=None, threshold=0.5, min_pr_auc=0.8, max_fpr=fpr / 2)
    assert capped["decision"] == "reject" and "above the maximum" in capped["reason"]


def test_one_class_holdout_is_refused():
    y = np.zeros(100, dtype=int)
    with pytest.raises(ValueError, match="both classes"):
        gate.gate_decide(y=y, cand=np.random.rand(100), champ=None, threshold=0.5, min_pr_auc=0.5, max_fpr=None)


def test_bootstrap_is_reproducible_and_stratified():
    y = labels(n=200, prevalence=0.05)  # ten threats: an unstratified resample could hold none
    champ = scores_with_signal(y, 1.0, seed=1)
    cand = scores_with_signal(y, 1.0, seed=2)
    a = gate.paired_bootstrap(y, cand, champ, 0.5, n_boot=300, seed=7)
    b = gate.paired_bootstrap(y, cand, champ, 0.5, n_boot=300, seed=7)
    assert a == b and a["stratified"] and a["resamples"] == 300
    assert np.isfinite(a["delta_pr_auc"]["low"])
