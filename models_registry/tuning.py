"""Threshold tuning: what thresholds would cost and catch, from recent events and their labels.

Every event scored in the last N days is scored by the current champion (events it already scored
keep their score). P(threat | score) is estimated from the labelled ones as the share of threats
in score bins. Within a bin that estimate is not biased by which events got labelled, because who
gets a label depends only on the score: everything above the review threshold is reviewed, and
audit samples are a random draw below it. Bins never straddle the review threshold, where the
labelling rate jumps, and no shape (not even monotonicity) is assumed: a model's misses often sit
at the lowest scores, where attacks it never saw look ordinary. Summing P(threat) and
1 - P(threat) over the events above and below a threshold gives the expected threats caught,
false positives and missed threats for any threshold, and the thresholds that minimise the
admin's costs (or meet their targets) are recommended."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from models_registry import ml, scoring, selectors
from reviews.choices import Action
from reviews.models import Policy, Source
from reviews.services import ServiceError

GRID = np.round(np.arange(0.0, 1.0 + 1e-9, 0.005), 3)  # candidate thresholds
STEP = 0.005
ACTIONS = [Action.STEP_UP.value, Action.DENY.value, Action.BLOCK.value]  # in increasing severity
MAX_EVENTS = 50_000
MIN_LABELS = 20
# Labelled events (decided audit samples) under the review threshold needed before anything is
# recommended: without them the share of threats there is a guess, not an estimate.
MIN_LABELS_BELOW_REVIEW = 10
MAX_COST = 1e6  # costs are relative weights; larger ones only overflow the sums
MIN_PER_BIN = 20
MAX_BINS = 40  # per side of the review threshold


@dataclass
class TuningData:
    scores: np.ndarray  # every (sampled) recent event, scored by the champion
    p: np.ndarray  # estimated P(threat) of each
    labelled_scores: np.ndarray
    labelled_y: np.ndarray
    days: float  # the days the events cover: the period asked for, or less for a younger source
    scale: float  # events represented by each sampled event (1 unless the window was capped)
    events_total: int
    champion_version: int | None = None
    labels_in_sample_excluded: int = 0
    rescored: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def per_day(self) -> float:
        return self.scale / self.days


def _quantile_edges(scores: np.ndarray, bins: int) -> np.ndarray:
    if len(scores) == 0 or bins <= 1:
        return np.array([])
    return np.unique(np.quantile(scores, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))


def threat_probability(scores: np.ndarray, y: np.ndarray, *, split_at: float):
    """P(threat | score) as the share of threats among labelled events in score bins of at least
    MIN_PER_BIN labels, binned separately below and at-or-above split_at (the review threshold).
    Returns a function of an array of scores. A side without labels borrows the nearest bin."""
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(y, dtype=float)
    below = scores < split_at
    edges = []
    for side in (scores[below], scores[~below]):
        edges.append(_quantile_edges(side, min(MAX_BINS, len(side) // MIN_PER_BIN)))
    # Bins are (e[i-1], e[i]]; the largest float under split_at as an edge puts every score under
    # the threshold on one side and every score at or over it on the other.
    edges = np.unique(np.r_[edges[0], np.nextafter(split_at, -np.inf), edges[1]])
    which = np.searchsorted(edges, scores, side="left")
    counts = np.bincount(which, minlength=len(edges) + 1)
    threats = np.bincount(which, weights=y, minlength=len(edges) + 1)
    filled = counts > 0
    shares = np.interp(np.arange(len(counts)), np.flatnonzero(filled), threats[filled] / counts[filled])
    return lambda s: shares[np.searchsorted(edges, np.asarray(s, dtype=float), side="left")]


def expected_counts(scores: np.ndarray, p: np.ndarray, grid: np.ndarray = GRID) -> dict[str, np.ndarray]:
    """For each threshold t of the grid: events at or above t, and the expected threats caught (TP),
    benign events flagged (FP) and threats below t (missed)."""
    order = np.argsort(scores)
    s, q = scores[order], p[order]
    cum_threat = np.r_[0.0, np.cumsum(q)]
    cum_benign = np.r_[0.0, np.cumsum(1.0 - q)]
    below = np.searchsorted(s, grid, side="left")  # events scoring under t
    return {
        "flagged": len(s) - below,
        "tp": cum_threat[-1] - cum_threat[below],
        "fp": cum_benign[-1] - cum_benign[below],
        "missed": cum_threat[below],
    }


def _middle_of_first_minimum(values: np.ndarray, grid: np.ndarray) -> float:
    """The cost is flat between two scores no event falls between; the middle of the first flat
    minimum is the threshold least sensitive to small score changes."""
    best = values.min()
    tol = 1e-9 * max(1.0, abs(best))
    at_min = values <= best + tol
    first = int(np.argmax(at_min))
    last = first
    while last + 1 < len(values) and at_min[last + 1]:
        last += 1
    return float(grid[(first + last) // 2])


def recommend_by_cost(
    scores: np.ndarray, p: np.ndarray, *, cost_fp: float, cost_missed: float, grid: np.ndarray = GRID
) -> tuple[float, np.ndarray]:
    """The threshold minimising cost_fp * expected false positives + cost_missed * expected missed
    threats, and the cost at every grid point."""
    counts = expected_counts(scores, p, grid)
    cost = cost_fp * counts["fp"] + cost_missed * counts["missed"]
    return _middle_of_first_minimum(cost, grid), cost


def recommend_by_precision(scores: np.ndarray, p: np.ndarray, target: float, grid: np.ndarray = GRID) -> float | None:
    """The lowest threshold at which the expected share of threats among flagged events reaches target."""
    counts = expected_counts(scores, p, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = counts["tp"] / counts["flagged"]
    ok = np.flatnonzero((counts["flagged"] > 0) & (precision >= target))
    return float(grid[ok[0]]) if len(ok) else None


def recommend_by_recall(scores: np.ndarray, p: np.ndarray, target: float, grid: np.ndarray = GRID) -> float | None:
    """The highest threshold that still catches at least target of the expected threats."""
    counts = expected_counts(scores, p, grid)
    total = counts["tp"][0] + counts["missed"][0]
    if total <= 0:
        return None
    ok = np.flatnonzero(counts["tp"] / total >= target)
    return float(grid[ok[-1]]) if len(ok) else None


def order_thresholds(review: float, actions: dict[str, float | None]) -> tuple[float, dict[str, float], list[str]]:
    """Make recommendations a valid policy: every action at or above the review threshold (so no
    action is proposed for an event nobody reviews) and more severe actions strictly higher."""
    notes = []
    out: dict[str, float] = {}
    floor = review
    for action in ACTIONS:
        t = actions.get(action)
        if t is None:
            continue
        if t < floor:
            notes.append(f"{action} raised from {t:.3f} to {floor:.3f} to stay at or above the thresholds below it")
            t = floor
        t = min(round(t, 3), 1.0)
        out[action] = t
        floor = min(t + STEP, 1.0)
    return review, out, notes


def preview(
    data: TuningData,
    *,
    review_threshold: float,
    thresholds: dict[str, float],
    audit_sample_rate: float,
    costs: dict[str, float] | None = None,
) -> dict[str, Any]:
    """What these thresholds would have done over the period, per day."""
    s, p, w = data.scores, data.p, data.per_day
    flagged = s >= review_threshold
    below = ~flagged
    out: dict[str, Any] = {
        "review_threshold": review_threshold,
        "thresholds": dict(thresholds),
        "queued_per_day": float((flagged.sum() + audit_sample_rate * below.sum()) * w),
        "flagged_per_day": float(flagged.sum() * w),
        "expected_fp_per_day": float((1 - p[flagged]).sum() * w),
        "expected_caught_per_day": float(p[flagged].sum() * w),
        "expected_missed_per_day": float(p[below].sum() * w),
        "actions": {},
    }
    bounds = sorted(thresholds.items(), key=lambda kv: kv[1])
    for i, (action, t) in enumerate(bounds):
        upper = bounds[i + 1][1] if i + 1 < len(bounds) else np.inf
        members = (s >= t) & (s < upper)
        out["actions"][action] = {
            "threshold": t,
            "per_day": float(members.sum() * w),
            "expected_fp_per_day": float((1 - p[members]).sum() * w),
        }
    if costs:
        # The sum of what each threshold's recommendation minimises: its false positives times
        # their cost plus the threats under it times the cost of a missed threat.
        missed_cost = costs.get("missed", 0.0)
        cost = costs.get("review", 0.0) * out["expected_fp_per_day"] + missed_cost * out["expected_missed_per_day"]
        for action, t in thresholds.items():
            if costs.get(action) is None:
                continue
            above = s >= t
            cost += costs[action] * (1 - p[above]).sum() * w + missed_cost * p[~above].sum() * w
        out["expected_cost_per_day"] = float(cost)
    return out


def recommend(
    data: TuningData,
    *,
    goal: str,
    costs: dict[str, float | None] | None = None,
    targets: dict[str, float | None] | None = None,
    keep: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Recommended review and action thresholds, for goal "cost" (costs: "missed", "review" and a
    false-positive cost per action) or "targets" (targets: "recall" for the review threshold and a
    precision per action). An action given no cost or target, or whose target no threshold
    reaches, keeps its threshold in `keep` (the current policy's) and is otherwise left out:
    applying a recommendation must not drop an action the admin did not ask about."""
    s, p = data.scores, data.p
    curves: dict[str, Any] = {"grid": GRID}
    notes: list[str] = []
    actions: dict[str, float | None] = {}
    # Only the actions the policy uses are tuned: a cost or target for another one does not add it
    # (keep=None, no policy to compare with, tunes every action given a cost or target).
    tuned = [a for a in ACTIONS if keep is None or a in keep]
    given_inputs = (costs if goal == "cost" else targets) or {}
    for action in ACTIONS:
        if action not in tuned and given_inputs.get(action) is not None:
            notes.append(
                f"{action} is not used by the policy: no threshold is recommended for it (add it on the policy page first)"
            )
    if goal == "cost":
        costs = costs or {}
        for key, value in costs.items():
            if value is not None and not (0 <= float(value) <= MAX_COST):
                raise ServiceError(f"costs must be between 0 and {MAX_COST:g}", field=f"cost_{key}")
        missed = float(costs.get("missed") or 0.0)
        if missed <= 0:
            raise ServiceError("give the cost of a missed threat", field="cost_missed")
        review, curves["review"] = recommend_by_cost(s, p, cost_fp=float(costs.get("review") or 0.0), cost_missed=missed)
        for action in tuned:
            if costs.get(action) is not None:
                actions[action], curves[action] = recommend_by_cost(s, p, cost_fp=float(costs[action]), cost_missed=missed)
    elif goal == "targets":
        targets = targets or {}
        recall = targets.get("recall")
        if recall is None:
            raise ServiceError("give the share of threats the review threshold must catch", field="target_recall")
        found = recommend_by_recall(s, p, recall)
        if found is None:
            raise ServiceError(f"no threshold catches {recall:.0%} of the expected threats", field="target_recall")
        review = found
        for action in tuned:
            target = targets.get(action)
            if target is not None:
                t = recommend_by_precision(s, p, target)
                if t is None:
                    kept = f"it keeps {keep[action]}" if keep and action in keep else "it is left out"
                    notes.append(f"no threshold reaches {target:.0%} precision for {action}; {kept}")
                actions[action] = t
    else:
        raise ServiceError("goal must be cost or targets", field="goal")
    given, what = (costs, "cost") if goal == "cost" else (targets, "target")
    for action, current in (keep or {}).items():
        if actions.get(action) is None:
            actions[action] = current
            if (given or {}).get(action) is None:
                notes.append(f"{action} keeps its current threshold {current}: no {what} given")
    # No threshold below the lowest labelled score: there the share of threats is not measured.
    if len(data.labelled_scores):
        floor = min(float(np.ceil(round(float(np.min(data.labelled_scores)) / STEP, 9)) * STEP), 1.0)
        if review < floor:
            notes.append(
                f"review threshold raised from {review:.3f} to {floor:.3f}, the lowest score with labelled evidence "
                "(below it the share of threats is not measured)"
            )
            review = round(floor, 3)
    if goal == "targets":
        # Raised to the evidence, the review threshold may no longer meet the recall asked for.
        at = expected_counts(s, p, np.array([review]))
        total = float(at["tp"][0] + at["missed"][0])
        if total > 0 and at["tp"][0] / total < targets["recall"]:
            notes.append(
                f"the review threshold {review:.3f} catches an estimated {at['tp'][0] / total:.0%} of threats, "
                f"short of the {targets['recall']:.0%} asked: the labelled evidence does not reach lower scores"
            )
    review, ordered, order_notes = order_thresholds(review, actions)
    return {"review_threshold": review, "thresholds": ordered, "notes": notes + order_notes, "curves": curves}


def _too_few_below(*, source: Source, policy: Policy, labels: int, below: int, since: datetime) -> str:
    """Why nothing can be recommended when too few labelled events lie under the review threshold,
    and what would give the evidence."""
    t = f"{policy.review_threshold:g}"
    head = (
        f"No thresholds are recommended: {labels} labelled events, {below} of them scored below the review threshold {t}. "
        f"Below {t} the share of threats is unmeasured, so neither a lower review threshold nor the threats the current "
        f"one misses can be estimated; tuning needs at least {MIN_LABELS_BELOW_REVIEW} decided audit samples there."
    )
    if policy.audit_sample_rate <= 0:
        return (
            head
            + " Set an audit sample rate above 0 in the learning settings so that reviewers see a random share of those events."
        )
    waiting = selectors.audit_samples_undecided(source=source, since=since)
    if waiting:
        return head + f" {waiting} audit samples wait for a decision: decide them (or wait for more verdicts), then tune again."
    return (
        head
        + f" No audit samples are waiting (audit sample rate {policy.audit_sample_rate:g}): wait for more events to be sampled and decided."
    )


def tuning_data_build(*, source: Source, days: int, now: datetime | None = None, limit: int = MAX_EVENTS) -> TuningData:
    now = now or timezone.now()
    champion = selectors.champion_of(source=source)
    if champion is None:
        raise ServiceError(f"{source.name} has no champion model to tune thresholds for")
    since = now - timedelta(days=days)
    rows = selectors.scored_events_window(source=source, since=since, limit=limit)
    if not rows:
        raise ServiceError(f"no events of {source.name} were scored in the last {days} days")
    total, first = selectors.scored_events_extent(source=source, since=since)
    # A source younger than the period has fewer days of events: per-day figures use the days it
    # has (at least one), not the period asked for.
    covered = max(1.0, (now - first).total_seconds() / 86400) if first else float(days)
    per_day_days = min(float(days), covered)
    scores = np.array([np.nan if r["score"] is None else r["score"] for r in rows], dtype=float)
    stale = [i for i, r in enumerate(rows) if r["model_version_id"] != champion.id or r["score"] is None]
    if stale:
        loaded = scoring.champion_bundle(source.id)
        if loaded is None:
            raise ServiceError(f"{source.name} has no champion model to tune thresholds for")
        _, bundle = loaded
        X = ml.frame_from_rows([rows[i]["attributes"] for i in stale], ml.bundle_spec(bundle))
        scores[stale] = ml.predict_scores(bundle, X)
    labelled = [i for i, r in enumerate(rows) if r["label__is_threat"] is not None]
    until_text = (champion.training_manifest or {}).get("train_until")
    until = datetime.fromisoformat(until_text) if until_text else None
    # Labels the champion was fitted on get over-confident scores; they are left out when enough
    # others remain.
    in_sample = {
        i
        for i in labelled
        if until is not None and rows[i]["label__origin"] in selectors.TRAINING_ORIGINS and rows[i]["occurred_at"] <= until
    }
    notes: list[str] = []
    out_of_sample = [i for i in labelled if i not in in_sample]
    y_all = np.array([1 if r["label__is_threat"] else 0 for r in rows], dtype=int)
    use = out_of_sample
    if len(out_of_sample) < MIN_LABELS or len(set(y_all[out_of_sample])) < 2:
        use = labelled
        if in_sample:
            notes.append(
                f"too few labels the champion was not trained on; {len(in_sample)} of its own training labels are used too, "
                "which makes its scores look more certain than they are"
            )
        in_sample = set()
    if len(use) < MIN_LABELS or len(set(y_all[use])) < 2:
        raise ServiceError(
            f"{len(use)} labelled events in the last {days} days ({int(y_all[use].sum())} threats): "
            f"tuning needs at least {MIN_LABELS} with both threats and benign events"
        )
    policy = Policy.objects.get(source=source)
    below = int((scores[use] < policy.review_threshold).sum())
    if below < MIN_LABELS_BELOW_REVIEW:
        raise ServiceError(_too_few_below(source=source, policy=policy, labels=len(use), below=below, since=since))
    estimate = threat_probability(scores[use], y_all[use], split_at=policy.review_threshold)
    if len(rows) < total:
        notes.append(f"the newest {len(rows)} of {total} events are used, each counting for {total / len(rows):.2f}")
    if per_day_days < days:
        notes.append(f"events were scored over {per_day_days:.1f} of the {days} days: per-day figures are over those")
    return TuningData(
        scores=scores,
        p=estimate(scores),
        labelled_scores=scores[use],
        labelled_y=y_all[use],
        days=per_day_days,
        scale=total / len(rows),
        events_total=total,
        champion_version=champion.version,
        labels_in_sample_excluded=len(in_sample),
        rescored=len(stale),
        notes=notes,
    )


def policy_current(policy: Policy) -> tuple[float, dict[str, float]]:
    return float(policy.review_threshold), {t["action"]: float(t["min_score"]) for t in policy.thresholds}


def tuning_run(
    *,
    source: Source,
    days: int,
    goal: str,
    costs: dict[str, float | None] | None = None,
    targets: dict[str, float | None] | None = None,
    custom: tuple[float, dict[str, float]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Recommendation and previews (current policy, recommended thresholds and, if given, the
    admin's own) for one set of inputs. Reads only; applying goes through services.thresholds_apply."""
    data = tuning_data_build(source=source, days=days, now=now)
    policy = Policy.objects.get(source=source)
    current_review, current_actions = policy_current(policy)
    rec = recommend(data, goal=goal, costs=costs, targets=targets, keep=current_actions)
    cost_terms = {k: float(v) for k, v in (costs or {}).items() if v is not None} if goal == "cost" else None
    kw = {"audit_sample_rate": policy.audit_sample_rate, "costs": cost_terms}
    out: dict[str, Any] = {
        "data": data,
        "recommended": rec,
        "current": preview(data, review_threshold=current_review, thresholds=current_actions, **kw),
        "proposed": preview(data, review_threshold=rec["review_threshold"], thresholds=rec["thresholds"], **kw),
        "notes": data.notes + rec["notes"],
    }
    if custom is not None:
        out["custom"] = preview(data, review_threshold=custom[0], thresholds=custom[1], **kw)
    return out
