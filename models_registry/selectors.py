"""Reads for the model side: versions, learning settings, labelled data, the figures monitoring and
threshold tuning are computed from, and the current alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django.db.models import Count, F, Min, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import TruncDate

from models_registry.choices import ModelStatus
from models_registry.models import LearningSettings, ModelVersion, MonitoringSnapshot
from reviews.choices import EventStatus, ItemKind, LabelOrigin, ReviewState, VerdictChoice
from reviews.models import Event, Label, ReviewItem, Source, Verdict

# Labels that set the time split between fitted and held-out rows. Audit-sample labels follow the
# same time cut but do not move it: they are fitted when older than the held-out period and held
# out otherwise (see services._train).
TRAINING_ORIGINS = (LabelOrigin.IMPORT, LabelOrigin.VERDICT, LabelOrigin.APPEAL)


def model_versions_list(*, source: Source | None = None, limit: int = 200) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("source").defer("log", "validation_report").order_by("source__name", "-version")
    if source is not None:
        qs = qs.filter(source=source)
    return qs[:limit]


def champion_of(*, source: Source) -> ModelVersion | None:
    return ModelVersion.objects.filter(source=source, status=ModelStatus.CHAMPION).first()


def previous_champions(*, source_id: int, exclude_pk: int | None = None) -> QuerySet[ModelVersion]:
    """Retired models that were champions once, the most recently promoted first."""
    qs = ModelVersion.objects.filter(source_id=source_id, status=ModelStatus.RETIRED, promoted_at__isnull=False)
    if exclude_pk is not None:
        qs = qs.exclude(pk=exclude_pk)
    return qs.order_by("-promoted_at")


def training_runs_waiting(*, older_than: datetime) -> list[int]:
    """Training runs created before older_than that no worker has started: their message was
    lost (the broker was down when the run was requested, or went down before delivering it)."""
    return list(
        ModelVersion.objects.filter(status=ModelStatus.TRAINING, started_at__isnull=True, created_at__lt=older_than)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def learning_settings_get(*, source: Source) -> LearningSettings:
    """The source's settings, or (unsaved) the installation defaults when an admin never set any."""
    found = LearningSettings.objects.filter(source=source).select_related("periodic_task").first()
    return found if found is not None else LearningSettings(source=source)


@dataclass
class LabelledRows:
    attributes: list[dict[str, Any]]
    y: list[int]
    times: list[datetime]
    origins: list[str]
    weights: list[float]
    event_ids: list[int]


def labelled_rows(*, source: Source) -> LabelledRows:
    """Every label of the source, oldest event first. There is one Label per event (a unique
    constraint), so imported labels and verdicts are already de-duplicated: a later verdict replaces
    the label rather than adding a second one."""
    rows = (
        Label.objects.filter(event__source=source)
        .order_by("event__occurred_at", "event_id")
        .values_list("event__attributes", "is_threat", "event__occurred_at", "origin", "weight", "event_id")
    )
    out = LabelledRows([], [], [], [], [], [])
    for attrs, is_threat, occurred, origin, weight, event_id in rows.iterator(chunk_size=5000):
        out.attributes.append(attrs)
        out.y.append(1 if is_threat else 0)
        out.times.append(occurred)
        out.origins.append(origin)
        out.weights.append(weight)
        out.event_ids.append(event_id)
    return out


def events_for_cold_start(*, source: Source, limit: int) -> list[dict[str, Any]]:
    return list(Event.objects.filter(source=source).order_by("-occurred_at").values_list("attributes", flat=True)[:limit])


def new_training_labels_since_last_run(*, source: Source) -> int:
    """Verdicts (and appeals) recorded since the source's last training run started."""
    last = ModelVersion.objects.filter(source=source).order_by("-created_at").values_list("created_at", flat=True).first()
    qs = Label.objects.filter(event__source=source, origin__in=[LabelOrigin.VERDICT, LabelOrigin.APPEAL])
    if last is not None:
        qs = qs.filter(created_at__gt=last)
    return qs.count()


# ---------------------------------------------------------------- monitoring


def scored_events_recent(*, source: Source, model_version: ModelVersion, since: datetime, limit: int) -> list[dict[str, Any]]:
    """The newest events the model scored since a time: their attributes and scores."""
    return list(
        Event.objects.filter(source=source, model_version=model_version, scored_at__gte=since, score__isnull=False)
        .order_by("-scored_at", "-id")
        .values("attributes", "score")[:limit]
    )


def overturns_by_day(*, source: Source, since: datetime) -> list[dict[str, Any]]:
    """Per day, live verdicts on flagged items and how many were overturns (false positives).
    Audit samples are left out: an "overturn" there is not a false alarm of the model."""
    rows = (
        Verdict.objects.filter(item__source=source, item__kind=ItemKind.FLAGGED, undone_at__isnull=True, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(decided=Count("id"), overturned=Count("id", filter=Q(verdict=VerdictChoice.OVERTURN)))
        .order_by("day")
    )
    out = []
    for r in rows:
        day: date = r["day"]
        out.append(
            {
                "day": day.isoformat(),
                "decided": r["decided"],
                "overturned": r["overturned"],
                "rate": r["overturned"] / r["decided"] if r["decided"] else None,
            }
        )
    return out


def audit_sample_counts(*, source: Source, since: datetime) -> tuple[int, int]:
    """(audit samples labelled since a time, how many of them were threats)."""
    agg = Label.objects.filter(event__source=source, origin=LabelOrigin.AUDIT_SAMPLE, created_at__gte=since).aggregate(
        n=Count("id"), threats=Count("id", filter=Q(is_threat=True))
    )
    return agg["n"], agg["threats"]


def audit_samples_undecided(*, source: Source, since: datetime | None = None) -> int:
    """Audit-sample review items of a source still waiting for a decision (opened since a time, if given)."""
    qs = ReviewItem.objects.filter(source=source, kind=ItemKind.AUDIT_SAMPLE).exclude(
        state__in=[ReviewState.DECIDED, ReviewState.EXPIRED]
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    return qs.count()


def below_threshold_count(*, source: Source, since: datetime, threshold: float) -> int:
    """Events scored since a time whose score was below the threshold: the population the audit
    sample was drawn from."""
    return Event.objects.filter(source=source, scored_at__gte=since, score__lt=threshold).count()


def monitoring_latest(*, source: Source) -> MonitoringSnapshot | None:
    return MonitoringSnapshot.objects.filter(source=source).select_related("model_version").first()


def monitoring_history(*, source: Source, limit: int = 60) -> list[MonitoringSnapshot]:
    return list(MonitoringSnapshot.objects.filter(source=source).select_related("model_version")[:limit])


def monitoring_alerts_current() -> list[dict[str, Any]]:
    """For every source, the alerts of its latest snapshot (sources whose latest snapshot is clean
    are left out) and a champion whose model file failed its integrity check, with the source's
    propose-only flag."""
    latest = MonitoringSnapshot.objects.filter(source=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
    latest_ids = Source.objects.annotate(latest=Subquery(latest)).exclude(latest=None).values("latest")
    snapshots = MonitoringSnapshot.objects.filter(id__in=latest_ids).exclude(alerts=[]).select_related("source")
    propose_only = dict(LearningSettings.objects.filter(propose_only=True).values_list("source_id", "propose_only_since"))
    damaged = ModelVersion.objects.filter(status=ModelStatus.CHAMPION, integrity_failed_at__isnull=False).select_related("source")
    integrity = [
        {
            "source": m.source.name,
            "alerts": [
                {
                    "code": "model_integrity",
                    "message": (
                        f"the model file of champion v{m.version} failed its integrity check and is refused; "
                        f"scoring continues with the last good champion. Restore the file, roll back or retrain. ({m.integrity_error})"
                    ),
                }
            ],
            "at": m.integrity_failed_at,
            "propose_only": m.source_id in propose_only,
        }
        for m in damaged
    ]
    return sorted(
        integrity
        + [
            {
                "source": s.source.name,
                "alerts": s.alerts,
                "at": s.created_at,
                "propose_only": s.source_id in propose_only,
            }
            for s in snapshots
        ],
        key=lambda entry: entry["source"],
    )


# ---------------------------------------------------------------- tuning


def scored_events_window(*, source: Source, since: datetime, limit: int) -> list[dict[str, Any]]:
    """Events scored since a time (newest first, at most limit), with the label if one exists."""
    return list(
        Event.objects.filter(source=source, scored_at__gte=since)
        .exclude(status=EventStatus.RECEIVED)
        .order_by("-scored_at", "-id")
        .values("id", "attributes", "score", "model_version_id", "occurred_at", "label__is_threat", "label__origin")[:limit]
    )


def scored_events_extent(*, source: Source, since: datetime) -> tuple[int, datetime | None]:
    """(events scored since a time, when the first of them was scored)."""
    agg = (
        Event.objects.filter(source=source, scored_at__gte=since)
        .exclude(status=EventStatus.RECEIVED)
        .aggregate(n=Count("id"), first=Min("scored_at"))
    )
    return agg["n"], agg["first"]


# ---------------------------------------------------------------- export


def labelled_export_rows(*, source: Source) -> QuerySet:
    """One row per labelled event, with the verdict behind the label and its reviewer."""
    return (
        Label.objects.filter(event__source=source)
        .order_by("event__occurred_at", "event_id")
        .values(
            "event_id",
            "is_threat",
            "origin",
            "weight",
            "created_at",
            external_id=F("event__external_id"),
            entity=F("event__entity"),
            occurred_at=F("event__occurred_at"),
            attributes=F("event__attributes"),
            score=F("event__score"),
            model_version=F("event__model_version__version"),
            reviewer=F("verdict__reviewer__username"),
            verdict_value=F("verdict__verdict"),
            reason=F("verdict__reason"),
            verdict_at=F("verdict__created_at"),
        )
    )
