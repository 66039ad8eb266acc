"""Writes for the model side: start a training run, train and validate it, promote and roll back."""

from __future__ import annotations

import logging
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from models_registry import ml
from models_registry.choices import ModelStatus
from models_registry.models import ModelVersion
from reviews.audit import audit_record
from reviews.choices import LabelOrigin
from reviews.models import Event, Label, Policy, Source
from reviews.services import ItemConflict, ServiceError

logger = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2  # the most recent fifth of the labels, by event time, is held out
MAX_UNSUPERVISED_ROWS = 50_000
STALE_TRAINING = timedelta(hours=2)


class TrainingConflict(ItemConflict):
    pass


def training_start(*, source: Source, triggered_by: str, actor=None) -> ModelVersion:
    """Create the row for a new training run. At most one run per source is in flight: a partial
    unique index refuses a second one even from a duplicated beat or a second worker."""
    try:
        with transaction.atomic():
            Source.objects.select_for_update().get(pk=source.pk)  # serialise version numbering
            last = ModelVersion.objects.filter(source=source).aggregate(v=Max("version"))["v"] or 0
            model = ModelVersion.objects.create(
                source=source, version=last + 1, status=ModelStatus.TRAINING, triggered_by=triggered_by
            )
            audit_record(
                actor=actor,
                actor_label=None if actor else triggered_by,
                verb="model.train_start",
                obj=model,
                after={"version": model.version},
            )
    except IntegrityError as exc:
        raise TrainingConflict(f"a training run for {source.name} is already in progress", field="source") from exc
    return model


def _labelled_rows(source: Source) -> tuple[list[dict], np.ndarray, list, dict[str, int]]:
    rows = list(
        Label.objects.filter(event__source=source)
        .order_by("event__occurred_at", "event_id")
        .values_list("event__attributes", "is_threat", "event__occurred_at", "origin")
    )
    attrs = [r[0] for r in rows]
    y = np.array([1 if r[1] else 0 for r in rows], dtype=int)
    times = [r[2] for r in rows]
    origins: dict[str, int] = {}
    for r in rows:
        origins[r[3]] = origins.get(r[3], 0) + 1
    return attrs, y, times, origins


def model_train(*, model: ModelVersion) -> ModelVersion:
    """Train, validate against the champion on the same held-out labels, then promote or reject.
    Any failure is written on the row (status, error, log) rather than lost in a worker log."""
    log: list[str] = []
    ModelVersion.objects.filter(pk=model.pk).update(started_at=timezone.now())
    try:
        _train(model, log)
    except Exception as exc:  # recorded on the row; the console shows it
        logger.exception("training %s failed", model)
        ModelVersion.objects.filter(pk=model.pk).update(
            status=ModelStatus.FAILED, error=f"{exc}\n\n{traceback.format_exc()}", log="\n".join(log), finished_at=timezone.now()
        )
    model.refresh_from_db()
    return model


def _train(model: ModelVersion, log: list[str]) -> None:
    source = model.source
    policy = Policy.objects.get(source=source)
    spec = ml.FeatureSpec.from_schema(source.schema)
    min_per_class = settings.SECAI_MIN_LABELS_PER_CLASS
    attrs, y, times, origins = _labelled_rows(source)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    log.append(f"labels: {len(y)} ({positives} threat, {negatives} benign); origins {origins}")
    supervised = positives >= min_per_class and negatives >= min_per_class
    manifest: dict[str, Any] = {
        "labels": len(y),
        "threat_labels": positives,
        "benign_labels": negatives,
        "labels_by_origin": origins,
        "min_labels_per_class": min_per_class,
        "time_range": [times[0].isoformat(), times[-1].isoformat()] if times else None,
    }
    cut = int(len(y) * (1 - HOLDOUT_FRACTION))
    holdout_attrs, y_holdout = attrs[cut:], y[cut:]
    if supervised:
        train_attrs, y_train = attrs[:cut], y[:cut]
        if len(np.unique(y_train)) < 2:
            raise ServiceError("the training part of the time split holds one class only; wait for more labels")
        algorithm = ml.HIST_GRADIENT_BOOSTING
        X_train = ml.frame_from_rows(train_attrs, spec)
        bundle = ml.fit(spec, algorithm, X_train, y_train)
        manifest.update(
            {
                "train_rows": len(y_train),
                "holdout_rows": len(y_holdout),
                "split": "time",
                "holdout_from": times[cut].isoformat() if cut < len(times) else None,
            }
        )
    else:
        # Cold start: not enough labels of both classes, so learn what ordinary looks like from
        # the events themselves.
        algorithm = ml.ISOLATION_FOREST
        recent = list(
            Event.objects.filter(source=source)
            .order_by("-occurred_at")
            .values_list("attributes", flat=True)[:MAX_UNSUPERVISED_ROWS]
        )
        if not recent:
            raise ServiceError(f"source {source.name} has no events to learn from")
        X_train = ml.frame_from_rows(recent, spec)
        bundle = ml.fit(spec, algorithm, X_train)
        manifest.update(
            {"train_rows": len(recent), "unsupervised": True, "reason": f"fewer than {min_per_class} labels of each class"}
        )
        holdout_attrs, y_holdout = attrs, y  # labels were not used to fit, so all of them can validate
    log.append(f"algorithm {algorithm}, trained on {manifest['train_rows']} rows")

    path = Path(settings.MODEL_STORE) / source.name / f"v{model.version}-{uuid.uuid4().hex[:8]}.skops"
    sha = ml.save(bundle, path)
    params = bundle["pipeline"].named_steps["model"].get_params()
    params = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))}
    ModelVersion.objects.filter(pk=model.pk).update(
        algorithm=algorithm,
        params=params,
        feature_schema=source.schema,
        training_manifest=manifest,
        artifact_path=str(path),
        sha256=sha,
        status=ModelStatus.CANDIDATE,
    )
    model.refresh_from_db()

    report = _validate(
        model=model, bundle=bundle, policy=policy, holdout_attrs=holdout_attrs, y_holdout=y_holdout, spec=spec, log=log
    )
    ModelVersion.objects.filter(pk=model.pk).update(
        metrics=report.get("candidate") or {}, validation_report=report, finished_at=timezone.now(), log="\n".join(log)
    )
    model.refresh_from_db()
    if report["decision"] == "promote":
        model_promote(model=model, actor=None, actor_label="system:validation-gate", reason=report["reason"])
    else:
        ModelVersion.objects.filter(pk=model.pk).update(status=ModelStatus.REJECTED, status_reason=report["reason"])
        audit_record(
            actor=None, actor_label="system:validation-gate", verb="model.reject", obj=model, after={"reason": report["reason"]}
        )


def _validate(*, model, bundle, policy, holdout_attrs, y_holdout, spec, log) -> dict[str, Any]:
    """The gate. Candidate and champion are scored on the same held-out labels; the candidate is
    promoted unless the 95% paired-bootstrap interval shows it significantly worse on PR AUC
    (upper bound below 0) or on the false-positive rate at the review threshold (lower bound
    above 0), or it misses the admin's minimum PR AUC."""
    threshold = policy.review_threshold
    champion = ModelVersion.objects.filter(source=model.source, status=ModelStatus.CHAMPION).first()
    report: dict[str, Any] = {
        "threshold": threshold,
        "holdout_rows": len(y_holdout),
        "champion_id": champion.id if champion else None,
    }
    both_classes = len(y_holdout) > 0 and len(np.unique(y_holdout)) == 2
    if not both_classes:
        if champion is None:
            report.update(
                decision="promote",
                reason="first model of this source (cold start; no held-out labels of both classes to validate on)",
            )
        else:
            report.update(decision="reject", reason="no held-out labels of both classes to compare with the champion")
        return report
    X_hold = ml.frame_from_rows(holdout_attrs, spec)
    cand_scores = ml.predict_scores(bundle, X_hold)
    report["candidate"] = ml.evaluate(y_holdout, cand_scores, threshold)
    log.append(f"candidate on {len(y_holdout)} held-out labels: {report['candidate']}")
    min_pr_auc = settings.SECAI_MIN_PR_AUC
    if report["candidate"]["pr_auc"] is not None and report["candidate"]["pr_auc"] < min_pr_auc:
        report.update(
            decision="reject", reason=f"PR AUC {report['candidate']['pr_auc']:.3f} is below the minimum {min_pr_auc:.3f}"
        )
        return report
    if champion is None:
        report.update(decision="promote", reason="first model of this source, meets the minimums")
        return report
    champ_bundle = ml.load(Path(champion.artifact_path), champion.sha256)
    champ_scores = ml.predict_scores(champ_bundle, X_hold)
    report["champion"] = ml.evaluate(y_holdout, champ_scores, threshold)
    boot = ml.paired_bootstrap(y_holdout, cand_scores, champ_scores, threshold)
    report["bootstrap"] = boot
    log.append(f"champion v{champion.version}: {report['champion']}; bootstrap {boot}")
    if boot["delta_pr_auc"]["high"] < 0:
        report.update(
            decision="reject",
            reason=f"significantly worse PR AUC than champion v{champion.version} (95% CI of the difference {boot['delta_pr_auc']['low']:+.4f} to {boot['delta_pr_auc']['high']:+.4f})",
        )
    elif boot["delta_fpr"]["low"] > 0:
        report.update(
            decision="reject",
            reason=f"significantly higher false-positive rate at {threshold} than champion v{champion.version} (95% CI {boot['delta_fpr']['low']:+.4f} to {boot['delta_fpr']['high']:+.4f})",
        )
    else:
        report.update(
            decision="promote",
            reason=f"not significantly worse than champion v{champion.version} on PR AUC ({boot['delta_pr_auc']['mean']:+.4f}) or false-positive rate ({boot['delta_fpr']['mean']:+.4f})",
        )
    return report


def model_promote(*, model: ModelVersion, actor, reason: str, actor_label: str = "") -> ModelVersion:
    """Make model the champion of its source; the previous champion is retired in the same
    transaction. The source row lock orders concurrent promotions, and a partial unique index
    makes two champions impossible even if that lock were bypassed."""
    with transaction.atomic():
        Source.objects.select_for_update().get(pk=model.source_id)
        model = ModelVersion.objects.select_for_update().get(pk=model.pk)
        if model.status in (ModelStatus.TRAINING, ModelStatus.FAILED) or not model.sha256:
            raise ServiceError(f"a model in state {model.status} cannot be promoted", field="status")
        if model.status == ModelStatus.CHAMPION:
            raise ItemConflict("this model is already the champion", field="status")
        previous = ModelVersion.objects.filter(source_id=model.source_id, status=ModelStatus.CHAMPION).first()
        if previous is not None:
            ModelVersion.objects.filter(pk=previous.pk).update(status=ModelStatus.RETIRED)
        label = actor_label or (actor.get_username() if actor else "system")
        before_status = model.status
        ModelVersion.objects.filter(pk=model.pk).update(
            status=ModelStatus.CHAMPION, promoted_by=label, promoted_at=timezone.now(), status_reason=reason
        )
        audit_record(
            actor=actor,
            actor_label=label,
            verb="model.promote",
            obj=model,
            before={"status": before_status, "champion": previous.version if previous else None},
            after={"status": ModelStatus.CHAMPION, "version": model.version, "reason": reason},
        )
    model.refresh_from_db()
    return model


def model_rollback(*, model: ModelVersion, actor, reason: str) -> ModelVersion:
    """Retire the champion `model` and bring back the most recently promoted earlier version."""
    if model.status != ModelStatus.CHAMPION:
        raise ItemConflict("only the current champion can be rolled back", field="status")
    previous = (
        ModelVersion.objects.filter(source_id=model.source_id, status=ModelStatus.RETIRED, promoted_at__isnull=False)
        .exclude(pk=model.pk)
        .order_by("-promoted_at")
        .first()
    )
    if previous is None:
        raise ServiceError("there is no earlier champion to roll back to", field="status")
    return model_promote(model=previous, actor=actor, reason=f"rollback from v{model.version}: {reason}")


def training_reap_stale() -> int:
    """A worker killed mid-training leaves its row in 'training', which would block the source's
    next run forever; mark such rows failed after a generous time."""
    cutoff = timezone.now() - STALE_TRAINING
    return ModelVersion.objects.filter(status=ModelStatus.TRAINING, created_at__lt=cutoff).update(
        status=ModelStatus.FAILED, error="abandoned: no result after 2 hours (worker lost?)", finished_at=timezone.now()
    )


def verdicts_since_last_training(*, source: Source) -> int:
    last = ModelVersion.objects.filter(source=source).order_by("-created_at").values_list("created_at", flat=True).first()
    qs = Label.objects.filter(event__source=source, origin=LabelOrigin.VERDICT)
    if last is not None:
        qs = qs.filter(created_at__gt=last)
    return qs.count()
