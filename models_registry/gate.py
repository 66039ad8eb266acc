"""The validation gate as a pure function of held-out labels and two models' scores on them, so its
statistical decisions can be tested on constructed data where the right answer is known.

The rule: a candidate is promoted when it meets the admin's minimums (PR AUC at least the minimum,
false-positive rate at the review threshold at most the maximum) and, if there is a champion, it is
not significantly worse than the champion on either figure. "Significantly worse" means the 95%
paired-bootstrap interval of the difference lies entirely on the worse side of zero. The bootstrap
is stratified (threats and benign rows are resampled separately) so every resample holds both
classes and the same prevalence, which PR AUC depends on."""

from __future__ import annotations

from typing import Any

import numpy as np

N_BOOT = 2000
N_BOOT_LARGE = 1000  # past LARGE_HOLDOUT rows the intervals are narrow and resampling is the slow part
LARGE_HOLDOUT = 5000
SEED = 0


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (the step-wise PR AUC), identical to sklearn's average_precision_score,
    tied scores included, and fast enough to run thousands of times in a bootstrap."""
    order = np.argsort(-scores, kind="mergesort")
    y_sorted, s_sorted = y[order], scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), len(y_sorted) - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    if tps[-1] == 0:
        return 0.0
    precision = tps / (last_of_tie + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> float | None:
    negatives = y == 0
    return float((scores[negatives] >= threshold).mean()) if negatives.any() else None


def _average_precision_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """average_precision for every row of 2-D arrays at once (the bootstrap's inner loop)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    y_sorted = np.take_along_axis(y, order, axis=1)
    s_sorted = np.take_along_axis(scores, order, axis=1)
    # Tied scores form one step of the curve: only the last row of each tie counts.
    last_of_tie = np.ones_like(s_sorted, dtype=bool)
    last_of_tie[:, :-1] = s_sorted[:, 1:] != s_sorted[:, :-1]
    tps = np.cumsum(y_sorted, axis=1)
    # tps is non-decreasing, so a running maximum over the tie ends is "tps at the previous tie end".
    at_ends = np.where(last_of_tie, tps, 0)
    previous = np.zeros_like(tps)
    previous[:, 1:] = np.maximum.accumulate(at_ends, axis=1)[:, :-1]
    precision = tps / np.arange(1, tps.shape[1] + 1)
    total = np.maximum(tps[:, -1:], 1)
    return np.sum(np.where(last_of_tie, (tps - previous) / total * precision, 0.0), axis=1)


def paired_bootstrap(
    y: np.ndarray, cand: np.ndarray, champ: np.ndarray, threshold: float, n_boot: int = N_BOOT, seed: int = SEED
) -> dict[str, Any]:
    """95% intervals of candidate minus champion on the same resampled rows, for PR AUC (higher is
    better) and false-positive rate at the threshold (lower is better)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    cand_flag, champ_flag = cand >= threshold, champ >= threshold
    d_pr = np.empty(n_boot)
    d_fpr = np.empty(n_boot)
    chunk = max(1, 2_000_000 // len(y))  # resamples per vectorised step, bounding memory on big holdouts
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        p = pos[rng.integers(0, len(pos), (k, len(pos)))]
        n = neg[rng.integers(0, len(neg), (k, len(neg)))]
        idx = np.concatenate([p, n], axis=1)
        yb = y[idx]
        d_pr[start : start + k] = _average_precision_rows(yb, cand[idx]) - _average_precision_rows(yb, champ[idx])
        d_fpr[start : start + k] = cand_flag[n].mean(axis=1) - champ_flag[n].mean(axis=1)

    def interval(values: np.ndarray) -> dict[str, float]:
        return {
            "mean": float(values.mean()),
            "low": float(np.quantile(values, 0.025)),
            "high": float(np.quantile(values, 0.975)),
        }

    return {
        "resamples": n_boot,
        "seed": seed,
        "stratified": True,
        "delta_pr_auc": interval(d_pr),
        "delta_fpr": interval(d_fpr),
    }


def gate_decide(
    *,
    y: np.ndarray,
    cand: np.ndarray,
    champ: np.ndarray | None,
    threshold: float,
    min_pr_auc: float,
    max_fpr: float | None,
    champion_label: str = "the champion",
    n_boot: int | None = None,
    seed: int = SEED,
) -> dict[str, Any]:
    """Every check with its figures and outcome, the decision ("promote" or "reject") and a reason a
    person can read. Needs held-out labels of both classes."""
    y = np.asarray(y).astype(int)
    cand = np.asarray(cand, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("the gate needs held-out labels of both classes")
    checks: list[dict[str, Any]] = []
    cand_pr = average_precision(y, cand)
    cand_fpr = fpr_at(y, cand, threshold)
    checks.append(
        {
            "name": "minimum PR AUC",
            "passed": cand_pr >= min_pr_auc,
            "detail": f"candidate PR AUC {cand_pr:.3f}, minimum {min_pr_auc:.3f}",
            "failure": f"PR AUC {cand_pr:.3f} is below the minimum {min_pr_auc:.3f}",
        }
    )
    if max_fpr is not None:
        checks.append(
            {
                "name": "maximum false-positive rate",
                "passed": cand_fpr is not None and cand_fpr <= max_fpr,
                "detail": f"candidate FPR at {threshold:g} is {cand_fpr:.3f}, maximum {max_fpr:.3f}",
                "failure": f"false-positive rate {cand_fpr:.3f} at {threshold:g} is above the maximum {max_fpr:.3f}",
            }
        )
    boot = None
    if champ is not None:
        champ = np.asarray(champ, dtype=float)
        if n_boot is None:
            n_boot = N_BOOT if len(y) <= LARGE_HOLDOUT else N_BOOT_LARGE
        boot = paired_bootstrap(y, cand, champ, threshold, n_boot=n_boot, seed=seed)
        pr, fp = boot["delta_pr_auc"], boot["delta_fpr"]
        checks.append(
            {
                "name": f"PR AUC not significantly worse than {champion_label}",
                "passed": pr["high"] >= 0,
                "detail": f"difference {pr['mean']:+.4f}, 95% CI {pr['low']:+.4f} to {pr['high']:+.4f}",
                "failure": f"significantly worse PR AUC than {champion_label} "
                f"(difference {pr['mean']:+.4f}, 95% CI {pr['low']:+.4f} to {pr['high']:+.4f})",
            }
        )
        checks.append(
            {
                "name": f"false-positive rate not significantly higher than {champion_label}",
                "passed": fp["low"] <= 0,
                "detail": f"difference {fp['mean']:+.4f}, 95% CI {fp['low']:+.4f} to {fp['high']:+.4f}",
                "failure": f"significantly higher false-positive rate at {threshold:g} than {champion_label} "
                f"(difference {fp['mean']:+.4f}, 95% CI {fp['low']:+.4f} to {fp['high']:+.4f})",
            }
        )
    failed = [c for c in checks if not c["passed"]]
    if failed:
        decision = "reject"
        reason = "; ".join(c["failure"] for c in failed)
    else:
        decision = "promote"
        reason = (
            f"not significantly worse than {champion_label} on PR AUC ({boot['delta_pr_auc']['mean']:+.4f}) "
            f"or false-positive rate ({boot['delta_fpr']['mean']:+.4f}), and meets the minimums"
            if boot is not None
            else "meets the minimums"
        )
    return {"decision": decision, "reason": reason, "checks": checks, "bootstrap": boot}
