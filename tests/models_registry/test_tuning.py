"""Threshold recommendations on constructed scores whose threat probability is known: P(threat) = score
for scores spread evenly over [0, 1]. Then the expected cost c_fp * FP + c_missed * missed is least
where the score equals c_fp / (c_fp + c_missed), precision above t is (1 + t) / 2 and recall above
t is 1 - t^2."""

import numpy as np
import pytest

from models_registry import tuning

SCORES = np.linspace(0, 1, 20_001)
P = SCORES.copy()


def data(days=10, scale=1.0):
    return tuning.TuningData(
        scores=SCORES,
        p=P,
        labelled_scores=SCORES,
        labelled_y=(SCORES > 0.5).astype(int),
        days=days,
        scale=scale,
        events_total=len(SCORES),
    )


@pytest.mark.parametrize(("cost_fp", "cost_missed", "expected"), [(1, 1, 0.5), (9, 1, 0.9), (1, 9, 0.1), (1, 3, 0.25)])
def test_cost_minimising_threshold(cost_fp, cost_missed, expected):
    t, cost = tuning.recommend_by_cost(SCORES, P, cost_fp=cost_fp, cost_missed=cost_missed)
    assert t == pytest.approx(expected, abs=0.006)
    assert cost.argmin() == pytest.approx(np.searchsorted(tuning.GRID, expected), abs=2)


def test_precision_and_recall_targets():
    assert tuning.recommend_by_precision(SCORES, P, 0.9) == pytest.approx(0.8, abs=0.006)
    assert tuning.recommend_by_recall(SCORES, P, 0.75) == pytest.approx(0.5, abs=0.006)
    assert tuning.recommend_by_precision(SCORES, np.zeros_like(P), 0.5) is None  # no threats anywhere


def test_flat_cost_picks_the_middle_of_the_gap():
    # Benign events at 0.1, threats at 0.9: any threshold between them is perfect; the middle is
    # the one least sensitive to small score changes.
    scores = np.array([0.1] * 50 + [0.9] * 50)
    p = np.array([0.0] * 50 + [1.0] * 50)
    t, _ = tuning.recommend_by_cost(scores, p, cost_fp=1, cost_missed=1)
    assert t == pytest.approx(0.5, abs=0.01)


def test_recommendation_keeps_actions_at_or_above_review_and_ordered():
    rec = tuning.recommend(data(), goal="cost", costs={"missed": 9, "review": 1, "step_up": 0.5, "deny": 9, "block": 9})
    assert rec["review_threshold"] == pytest.approx(0.1, abs=0.006)
    # step-up alone would sit at 0.05, under the review threshold; block ties with deny.
    assert rec["thresholds"]["step_up"] == pytest.approx(rec["review_threshold"])
    assert rec["thresholds"]["deny"] == pytest.approx(0.5, abs=0.006)
    assert rec["thresholds"]["block"] == pytest.approx(rec["thresholds"]["deny"] + tuning.STEP)
    assert any("step_up raised" in n for n in rec["notes"])
    targets = tuning.recommend(data(), goal="targets", targets={"recall": 0.75, "deny": 0.9})
    assert targets["review_threshold"] == pytest.approx(0.5, abs=0.006)
    assert targets["thresholds"] == {"deny": pytest.approx(0.8, abs=0.006)}


def test_actions_without_a_cost_or_target_keep_their_current_threshold():
    current = {"step_up": 0.5, "deny": 0.8}
    # The page's defaults: costs of a missed threat and of a review only.
    rec = tuning.recommend(data(), goal="cost", costs={"missed": 100, "review": 1}, keep=current)
    assert rec["thresholds"] == {"step_up": 0.5, "deny": 0.8}
    assert "step_up keeps its current threshold 0.5: no cost given" in rec["notes"]
    only_step_up = tuning.recommend(data(), goal="cost", costs={"missed": 9, "review": 1, "step_up": 0.5}, keep=current)
    assert set(only_step_up["thresholds"]) == {"step_up", "deny"} and only_step_up["thresholds"]["deny"] >= 0.8
    unreachable = tuning.recommend(data(), goal="targets", targets={"recall": 0.75, "deny": 1.01}, keep=current)
    assert unreachable["thresholds"]["deny"] == 0.8
    assert "no threshold reaches 101% precision for deny; it keeps 0.8" in unreachable["notes"]


def test_preview_counts_per_day():
    d = data(days=10, scale=2.0)  # each event stands for two; ten days
    p = tuning.preview(
        d, review_threshold=0.5, thresholds={"deny": 0.8}, audit_sample_rate=0.1, costs={"missed": 10, "review": 1, "deny": 5}
    )
    n = len(SCORES)
    above = (SCORES >= 0.5).sum()
    assert p["flagged_per_day"] == pytest.approx(above * 2 / 10)
    assert p["queued_per_day"] == pytest.approx((above + 0.1 * (n - above)) * 2 / 10)
    # Expected threats below 0.5 with P = score: the integral of s over [0, 0.5] times the density.
    assert p["expected_missed_per_day"] == pytest.approx(n * 0.125 * 2 / 10, rel=0.01)
    assert p["expected_fp_per_day"] == pytest.approx(n * 0.125 * 2 / 10, rel=0.01)
    deny = p["actions"]["deny"]
    assert deny["expected_fp_per_day"] == pytest.approx(n * 0.02 * 2 / 10, rel=0.01)  # integral of 1-s over [0.8, 1]
    # Each threshold's cost: its false positives times their cost, plus the threats under it times 10.
    deny_missed = n * 0.32 * 2 / 10  # integral of s over [0, 0.8]
    expected_cost = (
        10 * p["expected_missed_per_day"] + 1 * p["expected_fp_per_day"] + 5 * deny["expected_fp_per_day"] + 10 * deny_missed
    )
    assert p["expected_cost_per_day"] == pytest.approx(expected_cost, rel=0.01)


def test_recommended_thresholds_cost_no_more_than_any_other():
    costs = {"missed": 20, "review": 1, "step_up": 2, "deny": 10}
    rec = tuning.recommend(data(), goal="cost", costs=costs)
    best = tuning.preview(
        data(), review_threshold=rec["review_threshold"], thresholds=rec["thresholds"], audit_sample_rate=0, costs=costs
    )["expected_cost_per_day"]
    for review, step_up, deny in [(0.5, 0.5, 0.8), (0.05, 0.1, 0.5), (0.2, 0.3, 0.95)]:
        other = tuning.preview(
            data(), review_threshold=review, thresholds={"step_up": step_up, "deny": deny}, audit_sample_rate=0, costs=costs
        )
        assert best <= other["expected_cost_per_day"]


def test_goal_inputs_are_checked():
    from reviews.services import ServiceError

    with pytest.raises(ServiceError, match="missed threat"):
        tuning.recommend(data(), goal="cost", costs={"review": 1})
    with pytest.raises(ServiceError, match="must catch"):
        tuning.recommend(data(), goal="targets", targets={})


def test_threat_probability_recovers_missed_threats_from_an_audit_sample():
    # Attacks the model never saw sit at the lowest scores (30% of them are threats), ordinary
    # traffic in between (2%), and the flagged region rises to certain threats. Everything at or
    # above the review threshold 0.5 is labelled, a random 10% below it (audit samples).
    rng = np.random.default_rng(0)
    s = rng.random(20_000)
    p = np.where(s < 0.1, 0.3, np.where(s < 0.5, 0.02, s))
    y = (rng.random(len(s)) < p).astype(int)
    labelled = (s >= 0.5) | (rng.random(len(s)) < 0.1)
    estimate = tuning.threat_probability(s[labelled], y[labelled], split_at=0.5)
    truly_missed = y[s < 0.5].sum()
    estimated = estimate(s)[s < 0.5].sum()
    assert truly_missed == pytest.approx(760, rel=0.1)
    assert estimated == pytest.approx(truly_missed, rel=0.15)
    assert estimate(np.array([0.05]))[0] > 0.15 > estimate(np.array([0.3]))[0]  # no monotone smoothing
    # No labels under the threshold at all: the nearest bin is borrowed, the function still works.
    only_flagged = tuning.threat_probability(s[s >= 0.5], y[s >= 0.5], split_at=0.5)
    assert 0 <= only_flagged(np.array([0.0]))[0] <= 1


def labelled_from(lowest: float) -> tuning.TuningData:
    """Every event scored, but labels only from `lowest` up."""
    labelled = SCORES[SCORES >= lowest]
    return tuning.TuningData(
        scores=SCORES,
        p=P,
        labelled_scores=labelled,
        labelled_y=(labelled > 0.5).astype(int),
        days=10,
        scale=1.0,
        events_total=len(SCORES),
    )


def test_no_threshold_below_the_lowest_labelled_score():
    # Labels only from 0.3 up; costs that would put the review threshold near 0.1.
    d = labelled_from(0.3)
    rec = tuning.recommend(d, goal="cost", costs={"missed": 9, "review": 1, "step_up": 0.5}, keep={"step_up": 0.5})
    assert rec["review_threshold"] == pytest.approx(0.3)
    assert rec["thresholds"]["step_up"] >= 0.3
    assert any("lowest score with labelled evidence" in n for n in rec["notes"])


def test_costs_out_of_range_are_refused():
    from reviews.services import ServiceError

    with pytest.raises(ServiceError, match="costs must be between"):
        tuning.recommend(data(), goal="cost", costs={"missed": 1e308, "review": 1e308})
    with pytest.raises(ServiceError, match="costs must be between"):
        tuning.recommend(data(), goal="cost", costs={"missed": float("nan"), "review": 1})


def test_a_recall_target_missed_after_raising_to_the_evidence_is_said():
    d = labelled_from(0.3)
    at_floor = tuning.expected_counts(SCORES, P, np.array([0.3]))
    recall_at_floor = at_floor["tp"][0] / (at_floor["tp"][0] + at_floor["missed"][0])
    asked = min(recall_at_floor + 0.05, 0.999)
    rec = tuning.recommend(d, goal="targets", targets={"recall": asked})
    assert rec["review_threshold"] == pytest.approx(0.3)
    assert any(f"short of the {asked:.0%} asked" in n for n in rec["notes"]), rec["notes"]
    # A target the floor meets is not reported as missed.
    met = tuning.recommend(d, goal="targets", targets={"recall": recall_at_floor - 0.05})
    assert not any("short of" in n for n in met["notes"])
