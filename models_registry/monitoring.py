"""Watching a champion after it acts: score and attribute drift (PSI against the training data),
overturn rate per day, and the share of threats among events below the review threshold estimated
from audit samples. A snapshot row stores the figures and the alerts they raise."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.utils import timezone

from models_registry import drift, ml, selectors, services
from models_registry.models import MonitoringSnapshot
from reviews.models import Policy, Source

logger = logging.getLogger(__name__)

RECENT_EVENTS = 20_000  # newest scored events compared with the training data
MIN_EVENTS_FOR_PSI = 200  # PSI of a handful of events is noise (it is biased upward on small samples)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: unlike the normal approximation it stays inside
    [0, 1] and is honest when the count is 0 or the sample small, which is the usual case for
    threats found among audit samples."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def missed_threat_estimate(*, sampled: int, threats: int, below_threshold: int, days: float) -> dict[str, Any]:
    """Threats among audited below-threshold events estimate the share of all below-threshold
    events that are threats the model let through; times their number, the missed threats per day."""
    if sampled == 0:
        return {"sampled": 0, "threats": 0, "rate": None, "low": None, "high": None, "below_threshold": below_threshold}
    rate = threats / sampled
    low, high = wilson_interval(threats, sampled)
    per_day = below_threshold / days if days > 0 else 0.0
    return {
        "sampled": sampled,
        "threats": threats,
        "rate": rate,
        "low": low,
        "high": high,
        "below_threshold": below_threshold,
        "per_day": rate * per_day,
        "per_day_low": low * per_day,
        "per_day_high": high * per_day,
    }


def alerts_for(
    *,
    learning,
    score_psi: float | None,
    attribute_psi: dict[str, float],
    decided: int,
    overturn_rate: float | None,
    missed: dict[str, Any],
) -> list[dict[str, Any]]:
    """Compare each figure with the source's limit. Rates from fewer than min_alert_sample items
    never alert: two overturns out of three is not a deteriorating model."""
    alerts: list[dict[str, Any]] = []
    if score_psi is not None and score_psi > learning.score_psi_limit:
        alerts.append(
            {
                "code": "score_drift",
                "message": f"score PSI {score_psi:.3f} is above the limit {learning.score_psi_limit:g}",
                "value": score_psi,
                "limit": learning.score_psi_limit,
            }
        )
    drifting = sorted(((v, k) for k, v in attribute_psi.items() if v > learning.attribute_psi_limit), reverse=True)
    if drifting:
        names = ", ".join(f"{k} ({v:.2f})" for v, k in drifting[:5])
        more = f" and {len(drifting) - 5} more" if len(drifting) > 5 else ""
        alerts.append(
            {
                "code": "attribute_drift",
                "message": f"{len(drifting)} attribute(s) with PSI above {learning.attribute_psi_limit:g}: {names}{more}",
                "value": drifting[0][0],
                "limit": learning.attribute_psi_limit,
                "attributes": [k for _, k in drifting],
            }
        )
    if overturn_rate is not None and decided >= learning.min_alert_sample and overturn_rate > learning.overturn_rate_limit:
        alerts.append(
            {
                "code": "overturn_rate",
                "message": f"{overturn_rate:.0%} of {decided} flagged items were overturned (limit {learning.overturn_rate_limit:.0%})",
                "value": overturn_rate,
                "limit": learning.overturn_rate_limit,
            }
        )
    rate = missed.get("rate")
    if rate is not None and missed["sampled"] >= learning.min_alert_sample and rate > learning.missed_threat_limit:
        alerts.append(
            {
                "code": "missed_threats",
                "message": (
                    f"{missed['threats']} of {missed['sampled']} audit samples below the review threshold were threats: "
                    f"{rate:.1%} (95% CI {missed['low']:.1%} to {missed['high']:.1%}), limit {learning.missed_threat_limit:.1%}"
                ),
                "value": rate,
                "limit": learning.missed_threat_limit,
            }
        )
    return alerts


def monitoring_snapshot_create(*, source: Source, now: datetime | None = None) -> MonitoringSnapshot:
    now = now or timezone.now()
    learning = selectors.learning_settings_get(source=source)
    policy = Policy.objects.get(source=source)
    days = learning.monitoring_window_days
    since = now - timedelta(days=days)
    champion = selectors.champion_of(source=source)
    notes: list[str] = []
    drift_result: dict[str, Any] | None = None
    events_scored = 0
    if champion is None:
        notes.append("no champion model: nothing to compare with")
    else:
        recent = selectors.scored_events_recent(source=source, model_version=champion, since=since, limit=RECENT_EVENTS)
        events_scored = len(recent)
        reference = (champion.training_manifest or {}).get("drift_reference")
        if not reference:
            notes.append(f"v{champion.version} was trained without a drift reference; retrain to monitor drift")
        elif events_scored < MIN_EVENTS_FOR_PSI:
            notes.append(f"{events_scored} events scored by v{champion.version} in the window; drift needs {MIN_EVENTS_FOR_PSI}")
        else:
            spec = ml.FeatureSpec.from_schema(champion.feature_schema or source.schema)
            X = ml.frame_from_rows([r["attributes"] for r in recent], spec)
            drift_result = drift.drift_compare(reference, X, np.array([r["score"] for r in recent], dtype=float))
    by_day = selectors.overturns_by_day(source=source, since=since)
    decided = sum(d["decided"] for d in by_day)
    overturned = sum(d["overturned"] for d in by_day)
    overturn_rate = overturned / decided if decided else None
    sampled, threats = selectors.audit_sample_counts(source=source, since=since)
    below = selectors.below_threshold_count(source=source, since=since, threshold=policy.review_threshold)
    missed = missed_threat_estimate(sampled=sampled, threats=threats, below_threshold=below, days=days)
    if sampled == 0:
        waiting = selectors.audit_samples_undecided(source=source, since=since)
        if waiting:
            notes.append(f"{waiting} audit samples wait for a decision: missed threats are estimated once they are decided")
        elif policy.audit_sample_rate <= 0:
            notes.append("no audit samples decided in the window: set an audit sample rate to estimate missed threats")
        else:
            notes.append(
                f"no audit samples were drawn in the window (audit sample rate {policy.audit_sample_rate:g}): "
                "missed threats are estimated once some are decided"
            )
    attribute_psi = drift_result["attribute_psi"] if drift_result else {}
    score_psi = drift_result["score_psi"] if drift_result else None
    alerts = alerts_for(
        learning=learning,
        score_psi=score_psi,
        attribute_psi=attribute_psi,
        decided=decided,
        overturn_rate=overturn_rate,
        missed=missed,
    )
    snapshot = MonitoringSnapshot.objects.create(
        source=source,
        model_version=champion,
        window_start=since,
        window_end=now,
        events_scored=events_scored,
        score_psi=score_psi,
        max_attribute_psi=max(attribute_psi.values()) if attribute_psi else None,
        attribute_psi=attribute_psi,
        score_bins=drift_result["score_bins"] if drift_result else {},
        decided=decided,
        overturned=overturned,
        overturn_rate=overturn_rate,
        overturn_by_day=by_day,
        missed_threat=missed,
        alerts=alerts,
        notes=notes,
    )
    if alerts and learning.auto_propose_only and not learning.propose_only:
        services.source_propose_only(
            source=source,
            actor_label="system:monitoring",
            reason="alerts: " + "; ".join(a["message"] for a in alerts),
        )
        MonitoringSnapshot.objects.filter(pk=snapshot.pk).update(switched_to_propose_only=True)
        snapshot.switched_to_propose_only = True
    return snapshot


def monitoring_snapshot_all() -> list[int]:
    """A snapshot for every source with a champion; one failing source does not stop the others."""
    done = []
    for source in Source.objects.filter(model_versions__status="champion").distinct():
        try:
            done.append(monitoring_snapshot_create(source=source).pk)
        except Exception:
            logger.exception("monitoring of %s failed", source)
    return done
