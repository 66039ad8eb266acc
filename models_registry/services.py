"""Writes for the model side: learning settings, training runs (train, validate, promote or reject),
promotion and rollback, the propose-only flag, and applying tuned thresholds."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from celery.schedules import crontab
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from models_registry import drift, gate, ml, selectors
from models_registry.choices import ModelStatus
from models_registry.models import LearningSettings, ModelVersion
from reviews.audit import audit_record
from reviews.choices import LabelOrigin
from reviews.models import Policy, Source
from reviews.services import ItemConflict, ServiceError, policy_update

logger = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2  # the most recent fifth of the labels, by event time, is held out
MAX_UNSUPERVISED_ROWS = 50_000
SCORE_REFERENCE_MIN_ROWS = 200
STALE_TRAINING = timedelta(hours=2)
RETRAIN_TASK = "models_registry.tasks.retrain_source"


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
                source=source,
                version=last + 1,
                status=ModelStatus.TRAINING,
                triggered_by=triggered_by,
                history=[_history_entry(ModelStatus.TRAINING, actor.get_username() if actor else triggered_by)],
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


class TrainingRefused(ServiceError):
    """Training was refused before fitting (one class only, too few labels); the run is recorded as
    rejected with this message."""


def _history_entry(status: str, by: str, reason: str = "") -> dict[str, str]:
    return {"at": timezone.now().isoformat(), "status": status, "by": by, "reason": reason}


def _set_status(model_id: int, status: str, *, by: str, reason: str = "", **fields: Any) -> None:
    """Change a row's status and append the change to its history in one locked write."""
    with transaction.atomic():
        history = ModelVersion.objects.select_for_update().values_list("history", flat=True).get(pk=model_id)
        ModelVersion.objects.filter(pk=model_id).update(
            status=status, history=[*(history or []), _history_entry(status, by, reason)], **fields
        )


def _counts(y: np.ndarray) -> dict[str, int]:
    return {"rows": int(len(y)), "threat": int(y.sum()), "benign": int(len(y) - y.sum())}


def _part(indices: list[int], data: selectors.LabelledRows, y: np.ndarray) -> dict[str, Any]:
    """Size, balance, origins and time range of one part of the split."""
    part = _counts(y[indices]) if indices else {"rows": 0, "threat": 0, "benign": 0}
    origins: dict[str, int] = {}
    for i in indices:
        origins[data.origins[i]] = origins.get(data.origins[i], 0) + 1
    times = [data.times[i] for i in indices]
    part.update(
        by_origin=origins,
        time_range=[min(times).isoformat(), max(times).isoformat()] if times else None,
    )
    return part


def _why_not_supervised(threat: int, benign: int, minimum: int) -> str:
    if threat == 0 and benign == 0:
        return "no labels in the training part of the time split"
    if threat == 0 or benign == 0:
        only = "benign" if threat == 0 else "threat"
        return f"one class only: all {threat + benign} training labels are {only}"
    return (
        f"too few labels: {threat} threat and {benign} benign in the training part of the time split; "
        f"supervised training needs at least {minimum} of each"
    )


def model_train(*, model: ModelVersion) -> ModelVersion:
    """Train, validate against the champion on the same held-out labels, then promote or reject.
    Any failure is written on the row (status, error, log) rather than lost in a worker log."""
    log: list[str] = []
    # Compare-and-set on started_at: of two deliveries of one run (a redelivered message, the
    # reaper re-enqueueing a run whose first message was slow), only one trains.
    if not ModelVersion.objects.filter(pk=model.pk, started_at__isnull=True).update(started_at=timezone.now()):
        model.refresh_from_db()
        return model
    try:
        _train(model, log)
    except TrainingRefused as exc:
        log.append(exc.message)
        _set_status(
            model.pk,
            ModelStatus.REJECTED,
            by="system:training",
            reason=exc.message,
            status_reason=exc.message,
            log="\n".join(log),
            finished_at=timezone.now(),
        )
        audit_record(actor=None, actor_label="system:training", verb="model.refuse", obj=model, after={"reason": exc.message})
    except Exception as exc:  # recorded on the row; the console shows it
        logger.exception("training %s failed", model)
        _set_status(
            model.pk,
            ModelStatus.FAILED,
            by="system:training",
            reason=str(exc)[:500],
            status_reason=f"training failed: {exc}"[:500],
            error=f"{exc}\n\n{traceback.format_exc()}",
            log="\n".join(log),
            finished_at=timezone.now(),
        )
    model.refresh_from_db()
    return model


def _train(model: ModelVersion, log: list[str]) -> None:
    """Training data is every label of the source, one per event (the latest verdict wins), in event
    time order. Imported labels, verdicts and appeals are split by time: the oldest 80% are fitted
    and the newest 20% held out, so validation asks how the model does on what came last.

    Audit-sample labels follow the same time cut: those older than the held-out period are fitted,
    the newer ones are held out. They are the only random look at events below the review
    threshold; without them a model learns only from the events it already flagged (verdicts on
    flagged items are nearly all threats) and never what ordinary traffic looks like, which the
    simulation showed stalls the learning loop. The monitoring page's missed-threat estimate uses
    verdicts on recent audit samples scored by the champion, which training does not change."""
    source = model.source
    policy = Policy.objects.get(source=source)
    learning = selectors.learning_settings_get(source=source)
    spec = ml.FeatureSpec.from_schema(source.schema)
    data = selectors.labelled_rows(source=source)
    y_all = np.array(data.y, dtype=int)
    trainable = [i for i, o in enumerate(data.origins) if o in selectors.TRAINING_ORIGINS]
    audit = [i for i, o in enumerate(data.origins) if o == LabelOrigin.AUDIT_SAMPLE]
    cut = int(len(trainable) * (1 - HOLDOUT_FRACTION))
    train_idx, recent_idx = trainable[:cut], trainable[cut:]
    # One time cut for every origin: audit labels before the held-out period are fitted.
    cut_time = data.times[recent_idx[0]] if recent_idx else None
    audit_train = [i for i in audit if cut_time is not None and data.times[i] < cut_time]
    audit_holdout = [i for i in audit if i not in set(audit_train)]
    train_idx = sorted(train_idx + audit_train)
    train_part = _part(train_idx, data, y_all)
    minimum = max(1, learning.min_labels_per_class)
    origins: dict[str, int] = {}
    for o in data.origins:
        origins[o] = origins.get(o, 0) + 1
    manifest: dict[str, Any] = {
        "labels": len(y_all),
        "threat_labels": int(y_all.sum()),
        "benign_labels": int(len(y_all) - y_all.sum()),
        "labels_by_origin": origins,
        "deduplication": "one label per event: a later verdict replaces the earlier label",
        "time_range": [data.times[0].isoformat(), data.times[-1].isoformat()] if data.times else None,
        "min_labels_per_class": minimum,
        "audit_sample_labels": {
            "count": len(audit),
            "fitted": len(audit_train),
            "held_out": len(audit_holdout),
            "use": "fitted when older than the held-out period, held out otherwise",
        },
    }
    log.append(
        f"labels: {len(y_all)} ({manifest['threat_labels']} threat, {manifest['benign_labels']} benign); origins {origins}"
    )
    champion = selectors.champion_of(source=source)
    supervised = train_part["threat"] >= minimum and train_part["benign"] >= minimum
    if supervised:
        algorithm = ml.HIST_GRADIENT_BOOSTING
        holdout_idx = recent_idx + audit_holdout
        X_train = ml.frame_from_rows([data.attributes[i] for i in train_idx], spec)
        y_train = y_all[train_idx]
        weights = np.array([data.weights[i] for i in train_idx], dtype=float)
        weighted = bool(np.any(weights != 1.0))
        bundle = ml.fit(spec, algorithm, X_train, y_train, sample_weight=weights if weighted else None)
        manifest.update(
            mode="supervised",
            decision=f"supervised: {train_part['threat']} threat and {train_part['benign']} benign training labels "
            f"(minimum {minimum} of each)",
            unsupervised=False,
            weighted=weighted,
            split={"kind": "time", "holdout_fraction": HOLDOUT_FRACTION, "train": train_part},
            train_rows=len(train_idx),
            train_until=data.times[train_idx[-1]].isoformat(),
            holdout_from=data.times[recent_idx[0]].isoformat() if recent_idx else None,
        )
    else:
        why = _why_not_supervised(train_part["threat"], train_part["benign"], minimum)
        if champion is not None and champion.algorithm == ml.HIST_GRADIENT_BOOSTING:
            manifest.update(mode="refused", decision=f"refused: {why}")
            ModelVersion.objects.filter(pk=model.pk).update(training_manifest=manifest, feature_schema=source.schema)
            raise TrainingRefused(
                f"refused: {why}; the supervised champion v{champion.version} stays (lower the minimum in the "
                f"learning settings, or wait for more verdicts)"
            )
        # Cold start: not enough labels of both classes, so learn what ordinary looks like from the
        # events themselves. No label is fitted, so all of them can validate.
        algorithm = ml.ISOLATION_FOREST
        recent = selectors.events_for_cold_start(source=source, limit=MAX_UNSUPERVISED_ROWS)
        if not recent:
            raise TrainingRefused(f"refused: source {source.name} has no events to learn from yet")
        needed = max(1, learning.min_cold_start_events)
        if len(recent) < needed:
            # From a few events IsolationForest learns nothing: every event would score about the
            # same, at the review threshold, and the whole stream would be queued.
            manifest.update(mode="refused", decision=f"refused: {why}; too few events for a cold start")
            ModelVersion.objects.filter(pk=model.pk).update(training_manifest=manifest, feature_schema=source.schema)
            raise TrainingRefused(
                f"refused: too few events for a cold start: source {source.name} has {len(recent)} event"
                f"{'' if len(recent) == 1 else 's'}, an unsupervised model needs at least {needed} (the minimum in "
                f"the learning settings), and supervised training is not possible ({why})"
            )
        X_train = ml.frame_from_rows(recent, spec)
        bundle = ml.fit(spec, algorithm, X_train)
        holdout_idx = list(range(len(y_all)))
        manifest.update(
            mode="cold_start",
            decision=f"cold start (unsupervised IsolationForest): supervised training refused, {why}",
            unsupervised=True,
            reason=why,
            train_rows=len(recent),
            train_until=None,
        )
    holdout_attrs = [data.attributes[i] for i in holdout_idx]
    y_holdout = y_all[holdout_idx]
    manifest.update(holdout_rows=len(holdout_idx), holdout=_part(holdout_idx, data, y_all))
    log.append(f"{manifest['decision']}; algorithm {algorithm}, trained on {manifest['train_rows']} rows")

    path = Path(settings.MODEL_STORE) / source.name / f"v{model.version}-{uuid.uuid4().hex[:8]}.skops"
    sha = ml.save(bundle, path)
    cand_scores = ml.predict_scores(bundle, ml.frame_from_rows(holdout_attrs, spec)) if holdout_attrs else np.array([])
    # The score reference for drift monitoring must be out-of-sample for a supervised model (its
    # scores on its own training rows are over-confident), so it is the held-out rows when there
    # are enough of them; IsolationForest's scores on its training events are representative.
    if algorithm == ml.HIST_GRADIENT_BOOSTING and len(cand_scores) >= SCORE_REFERENCE_MIN_ROWS:
        ref_scores, basis = cand_scores, "held-out labelled rows"
    else:
        sample = X_train.sample(n=min(len(X_train), drift.REFERENCE_ROWS), random_state=0)
        ref_scores, basis = ml.predict_scores(bundle, sample), "training rows"
    manifest["drift_reference"] = drift.reference_build(
        X_train, numeric=spec.numeric, categorical=spec.categorical, scores=ref_scores, score_basis=basis
    )
    params = bundle["pipeline"].named_steps["model"].get_params()
    params = {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, type(None)))}
    ModelVersion.objects.filter(pk=model.pk).update(
        algorithm=algorithm,
        params=params,
        feature_schema=source.schema,
        training_manifest=manifest,
        artifact_path=str(path),
        sha256=sha,
    )
    _set_status(model.pk, ModelStatus.CANDIDATE, by="system:training", reason=manifest["decision"])
    model.refresh_from_db()

    report = _validate(
        model=model,
        policy=policy,
        learning=learning,
        champion=champion,
        holdout_attrs=holdout_attrs,
        holdout_times=[data.times[i] for i in holdout_idx],
        holdout_origins=[data.origins[i] for i in holdout_idx],
        y_holdout=y_holdout,
        cand_scores=cand_scores,
        log=log,
    )
    ModelVersion.objects.filter(pk=model.pk).update(
        metrics=report.get("candidate") or {}, validation_report=report, finished_at=timezone.now(), log="\n".join(log)
    )
    model.refresh_from_db()
    if report["decision"] == "promote":
        model_promote(model=model, actor=None, actor_label="system:validation-gate", reason=report["reason"])
    else:
        _set_status(
            model.pk, ModelStatus.REJECTED, by="system:validation-gate", reason=report["reason"], status_reason=report["reason"]
        )
        audit_record(
            actor=None, actor_label="system:validation-gate", verb="model.reject", obj=model, after={"reason": report["reason"]}
        )


def policy_thresholds(policy: Policy) -> dict[str, float]:
    """The review threshold and each action's threshold, by name: the operating points the
    validation report shows a confusion matrix for."""
    out = {"review": float(policy.review_threshold)}
    for rule in sorted(policy.thresholds, key=lambda r: r["min_score"]):
        out[rule["action"]] = float(rule["min_score"])
    return out


def _validate(
    *, model, policy, learning, champion, holdout_attrs, holdout_times, holdout_origins, y_holdout, cand_scores, log
) -> dict[str, Any]:
    """Score the champion on the candidate's held-out labels and apply the gate (models_registry.gate)."""
    threshold = policy.review_threshold
    thresholds = policy_thresholds(policy)
    by_origin: dict[str, int] = {}
    for o in holdout_origins:
        by_origin[o] = by_origin.get(o, 0) + 1
    report: dict[str, Any] = {
        "threshold": threshold,
        "thresholds": thresholds,
        "holdout_rows": len(y_holdout),
        "holdout_by_origin": by_origin,
        "champion_id": champion.id if champion else None,
        "champion_version": champion.version if champion else None,
        "rules": {
            "min_pr_auc": learning.min_pr_auc,
            "max_fpr_at_threshold": learning.max_fpr_at_threshold,
            "test": "stratified paired bootstrap, 95% intervals of candidate minus champion",
        },
    }
    both_classes = len(y_holdout) > 0 and len(np.unique(y_holdout)) == 2
    if not both_classes:
        if champion is None:
            report.update(
                decision="promote",
                reason="first model of this source (cold start; no held-out labels of both classes to validate on)",
                checks=[],
            )
        else:
            report.update(decision="reject", reason="no held-out labels of both classes to compare with the champion", checks=[])
        return report
    report["candidate"] = ml.evaluate(y_holdout, cand_scores, threshold)
    report["curves"] = {"candidate": ml.curves(y_holdout, cand_scores, thresholds)}
    log.append(f"candidate on {len(y_holdout)} held-out labels: {report['candidate']}")
    champ_scores = None
    if champion is not None:
        champ_bundle = ml.load(Path(champion.artifact_path), champion.sha256)
        champ_scores = ml.predict_scores(champ_bundle, ml.frame_from_rows(holdout_attrs, ml.bundle_spec(champ_bundle)))
        report["champion"] = ml.evaluate(y_holdout, champ_scores, threshold)
        report["curves"]["champion"] = ml.curves(y_holdout, champ_scores, thresholds)
        # Held-out rows the champion was fitted on favour the champion: the comparison is then
        # conservative. Their number is shown so a reader can judge.
        until = (champion.training_manifest or {}).get("train_until")
        if until:
            cutoff = datetime.fromisoformat(until)
            report["holdout_seen_by_champion"] = sum(
                1 for t, o in zip(holdout_times, holdout_origins, strict=True) if o in selectors.TRAINING_ORIGINS and t <= cutoff
            )
        log.append(f"champion v{champion.version}: {report['champion']}")
    result = gate.gate_decide(
        y=y_holdout,
        cand=cand_scores,
        champ=champ_scores,
        threshold=threshold,
        min_pr_auc=learning.min_pr_auc,
        max_fpr=learning.max_fpr_at_threshold,
        champion_label=f"champion v{champion.version}" if champion else "the champion",
    )
    report.update(result)
    if champion is None and result["decision"] == "promote":
        report["reason"] = f"first model of this source, {result['reason']}"
    log.append(f"gate: {report['decision']}: {report['reason']}")
    return report


def model_promote(*, model: ModelVersion, actor, reason: str, actor_label: str = "") -> ModelVersion:
    """Make model the champion of its source; the previous champion is retired in the same
    transaction. The source row lock orders concurrent promotions, and a partial unique index
    makes two champions impossible even if that lock were bypassed."""
    reason = reason.strip()
    if not reason:
        raise ServiceError("give a reason", field="reason")
    with transaction.atomic():
        Source.objects.select_for_update().get(pk=model.source_id)
        model = ModelVersion.objects.select_for_update().get(pk=model.pk)
        if model.status in (ModelStatus.TRAINING, ModelStatus.FAILED) or not model.sha256:
            raise ServiceError(f"a model in state {model.status} cannot be promoted", field="status")
        if model.status == ModelStatus.CHAMPION:
            raise ItemConflict("this model is already the champion", field="status")
        try:
            ml.verify(Path(model.artifact_path), model.sha256)
        except ml.ModelIntegrityError as exc:
            raise ServiceError(f"v{model.version} cannot be promoted: its model file failed the integrity check ({exc})") from exc
        previous = ModelVersion.objects.filter(source_id=model.source_id, status=ModelStatus.CHAMPION).first()
        label = actor_label or (actor.get_username() if actor else "system")
        if previous is not None:
            _set_status(previous.pk, ModelStatus.RETIRED, by=label, reason=f"replaced by v{model.version}: {reason}")
        before_status = model.status
        _set_status(
            model.pk,
            ModelStatus.CHAMPION,
            by=label,
            reason=reason,
            promoted_by=label,
            promoted_at=timezone.now(),
            status_reason=reason,
        )
        audit_record(
            actor=actor,
            actor_label=label,
            verb="model.promote",
            obj=model,
            before={"status": before_status, "champion": previous.version if previous else None},
            after={"status": ModelStatus.CHAMPION, "version": model.version, "reason": reason},
        )
        from actions.services import model_promoted

        model.refresh_from_db()
        model_promoted(model=model)
    model.refresh_from_db()
    return model


def model_rollback(*, model: ModelVersion, actor, reason: str) -> ModelVersion:
    """Retire the champion `model` and bring back the most recently promoted earlier version.
    The check that `model` is still the champion happens under the source lock, so two admins
    rolling back at once go back one version, not two."""
    reason = reason.strip()
    if not reason:
        raise ServiceError("give a reason", field="reason")
    with transaction.atomic():
        Source.objects.select_for_update().get(pk=model.source_id)
        current = ModelVersion.objects.get(pk=model.pk)
        if current.status != ModelStatus.CHAMPION:
            raise ItemConflict("only the current champion can be rolled back", field="status")
        previous = selectors.previous_champions(source_id=model.source_id, exclude_pk=model.pk).first()
        if previous is None:
            raise ServiceError("there is no earlier champion to roll back to", field="status")
        restored = model_promote(model=previous, actor=actor, reason=f"rollback from v{current.version}: {reason}")
        audit_record(
            actor=actor,
            verb="model.rollback",
            obj=current,
            before={"status": ModelStatus.CHAMPION, "version": current.version},
            after={"status": ModelStatus.RETIRED, "restored_version": restored.version, "reason": reason},
        )
    return restored


# ---------------------------------------------------------------- model file integrity


def _integrity_set(*, model_id: int, failed: bool, error: str = "", after: dict[str, Any] | None = None) -> bool:
    # Any number of workers may find the same bad file: the compare-and-set on
    # integrity_failed_at writes one audit entry per change, not one per worker or per batch.
    with transaction.atomic():
        won = ModelVersion.objects.filter(pk=model_id, integrity_failed_at__isnull=failed).update(
            integrity_failed_at=timezone.now() if failed else None, integrity_error=error[:2000]
        )
        if won:
            audit_record(
                actor=None,
                actor_label="system:integrity",
                verb="model.integrity_failed" if failed else "model.integrity_restored",
                obj=ModelVersion.objects.get(pk=model_id),
                after=after,
            )
    return bool(won)


def model_integrity_failed(*, model_id: int, error: str, scoring_with: str = "") -> bool:
    """Record that a model file failed its check; returns whether this call recorded it."""
    return _integrity_set(
        model_id=model_id, failed=True, error=error, after={"error": error[:2000], "scoring_with": scoring_with}
    )


def model_integrity_restored(*, model_id: int) -> bool:
    """The file checks out again (restored from a backup): clear the alert, once."""
    return _integrity_set(model_id=model_id, failed=False)


def model_files_verify() -> list[int]:
    """Check every champion's file against its sha256, so a file damaged on disk is reported
    even while the workers score with the copy they loaded before; returns the ids that failed."""
    failed = []
    for model in ModelVersion.objects.filter(status=ModelStatus.CHAMPION).only(
        "id", "artifact_path", "sha256", "integrity_failed_at"
    ):
        try:
            ml.verify(Path(model.artifact_path), model.sha256)
        except ml.ModelIntegrityError as exc:
            failed.append(model.pk)
            model_integrity_failed(model_id=model.pk, error=str(exc), scoring_with="workers keep the copy they have loaded")
        else:
            if model.integrity_failed_at is not None:
                model_integrity_restored(model_id=model.pk)
    return failed


def training_reap_stale() -> int:
    """A worker killed mid-training leaves its row in 'training', which would block the source's
    next run forever; mark such rows failed after a generous time."""
    cutoff = timezone.now() - STALE_TRAINING
    stale = list(ModelVersion.objects.filter(status=ModelStatus.TRAINING, created_at__lt=cutoff).values_list("pk", flat=True))
    message = "abandoned: no result after 2 hours (worker lost?)"
    for pk in stale:
        _set_status(pk, ModelStatus.FAILED, by="system:reaper", reason=message, error=message, finished_at=timezone.now())
    return len(stale)


def verdicts_since_last_training(*, source: Source) -> int:
    return selectors.new_training_labels_since_last_run(source=source)


# ---------------------------------------------------------------- learning settings

LEARNING_FIELDS = (
    "min_labels_per_class",
    "min_cold_start_events",
    "min_pr_auc",
    "max_fpr_at_threshold",
    "retrain_after_verdicts",
    "retrain_schedule",
    "monitoring_window_days",
    "score_psi_limit",
    "attribute_psi_limit",
    "overturn_rate_limit",
    "missed_threat_limit",
    "min_alert_sample",
    "auto_propose_only",
    "propose_only",
)


def cron_parse(text: str) -> dict[str, str] | None:
    """'minute hour day-of-month month day-of-week' to CrontabSchedule fields; None when blank.
    At most one run an hour (the minute is one number): a training run takes minutes, and a
    schedule that fires every minute would only queue refused duplicates."""
    text = " ".join(text.split())
    if not text:
        return None
    parts = text.split(" ")
    if len(parts) != 5:
        raise ServiceError('a schedule has five fields: "minute hour day-of-month month day-of-week"', field="retrain_schedule")
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    if not minute.isdigit() or not 0 <= int(minute) <= 59:
        raise ServiceError("the minute must be one number from 0 to 59 (at most one run an hour)", field="retrain_schedule")
    try:
        crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week)
    except (ValueError, TypeError) as exc:
        raise ServiceError(f"not a valid schedule: {exc}", field="retrain_schedule") from exc
    return {
        "minute": minute,
        "hour": hour,
        "day_of_month": day_of_month,
        "month_of_year": month_of_year,
        "day_of_week": day_of_week,
    }


def _schedule_sync(learning: LearningSettings) -> None:
    """Keep the source's django-celery-beat entry in step with its schedule. Beat's database
    scheduler notices the change (PeriodicTask.save bumps its change marker)."""
    fields = cron_parse(learning.retrain_schedule)
    task = learning.periodic_task
    if fields is None:
        if task is not None and task.enabled:
            task.enabled = False
            task.save()
        return
    schedule, _ = CrontabSchedule.objects.get_or_create(**fields, timezone=ZoneInfo("UTC"))
    name = f"retrain source {learning.source.name}"
    if task is None:
        task = PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
    task.task = RETRAIN_TASK
    task.crontab = schedule
    task.interval = None
    task.args = json.dumps([learning.source_id])
    task.enabled = True
    task.save()
    if learning.periodic_task_id != task.pk:
        learning.periodic_task = task
        LearningSettings.objects.filter(pk=learning.pk).update(periodic_task=task)


def _learning_values(learning: LearningSettings) -> dict[str, Any]:
    return {f: getattr(learning, f) for f in LEARNING_FIELDS}


def learning_settings_update(
    *, source: Source, actor, audit_sample_rate: float | None = None, **changes: Any
) -> LearningSettings:
    """Change a source's learning settings (creating them from the defaults on first use), keep its
    retraining schedule in django-celery-beat in step, and audit the change. The audit sample rate
    lives on the policy and is changed through the policy service, which audits it too."""
    unknown = set(changes) - set(LEARNING_FIELDS)
    if unknown:
        raise ServiceError(f"unknown settings: {', '.join(sorted(unknown))}")
    if "retrain_schedule" in changes:
        changes["retrain_schedule"] = " ".join((changes["retrain_schedule"] or "").split())
        cron_parse(changes["retrain_schedule"])
    label = actor.get_username() if getattr(actor, "is_authenticated", False) else "system"
    with transaction.atomic():
        Source.objects.select_for_update().get(pk=source.pk)
        learning, _ = LearningSettings.objects.select_related("source", "periodic_task").get_or_create(source=source)
        before = _learning_values(learning)
        propose_only = changes.pop("propose_only", None)
        for key, value in changes.items():
            setattr(learning, key, value)
        learning.updated_by = label
        try:
            learning.full_clean(exclude=["source", "periodic_task"])
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise ServiceError(f"{field}: {' '.join(messages)}", field=field) from exc
        learning.save()
        if propose_only is not None and propose_only != learning.propose_only:
            _propose_only_set(learning, on=propose_only, reason=f"set by {label}", by=label)
        _schedule_sync(learning)
        audit_record(actor=actor, verb="learning.update", obj=learning, before=before, after=_learning_values(learning))
        if audit_sample_rate is not None:
            policy = Policy.objects.get(source=source)
            if audit_sample_rate != policy.audit_sample_rate:
                policy_update(policy=policy, actor=actor, audit_sample_rate=audit_sample_rate)
    learning.refresh_from_db()
    return learning


def _propose_only_set(learning: LearningSettings, *, on: bool, reason: str, by: str) -> None:
    LearningSettings.objects.filter(pk=learning.pk).update(
        propose_only=on, propose_only_reason=reason if on else "", propose_only_since=timezone.now() if on else None
    )
    learning.refresh_from_db()


def source_propose_only(*, source: Source, reason: str, actor=None, actor_label: str = "") -> LearningSettings:
    """Mark a source propose-only (its model's proposals must wait for a person). Called by monitoring
    when an alert fires on a source whose admin asked for that; audited."""
    label = actor_label or (actor.get_username() if getattr(actor, "is_authenticated", False) else "system")
    with transaction.atomic():
        Source.objects.select_for_update().get(pk=source.pk)
        learning, _ = LearningSettings.objects.get_or_create(source=source)
        if not learning.propose_only:
            _propose_only_set(learning, on=True, reason=reason, by=label)
            audit_record(
                actor=actor,
                actor_label=label,
                verb="learning.propose_only",
                obj=learning,
                before={"propose_only": False},
                after={"propose_only": True, "reason": reason},
            )
    return learning


# ---------------------------------------------------------------- thresholds


def thresholds_apply(
    *,
    source: Source,
    actor,
    review_threshold: float,
    thresholds: list[dict],
    basis: dict[str, Any],
    four_eyes_actions: list[str] | None = None,
) -> Policy:
    """Apply thresholds chosen on the tuning page through the policy service (which audits the
    change) and record what they were based on (costs or targets, period, estimates). The actions
    needing a second opinion change only when given."""
    changes: dict[str, Any] = {"review_threshold": review_threshold, "thresholds": thresholds}
    if four_eyes_actions is not None:
        changes["four_eyes_actions"] = list(four_eyes_actions)
    with transaction.atomic():
        policy = policy_update(policy=Policy.objects.get(source=source), actor=actor, **changes)
        audit_record(actor=actor, verb="policy.tune", obj=policy, after={**changes, "basis": basis})
    return policy
