"""Reads for the administrators: the dashboard's series and the plots drawn from them, and the audit
trail list. Every series is a small, fixed number of aggregate queries whose result size depends on
the period (days, hours, reviewers, model versions), never on the number of events or items."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db.models import Count, F, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Cast, Floor, Greatest, Least, TruncDate, TruncHour
from django.utils import timezone

from reviews.choices import EventStatus, ItemKind, ReviewState, VerdictChoice
from reviews.models import AuditEntry, Event, ReviewItem, Source, Verdict

PERIODS = (7, 30, 90)
DEFAULT_DAYS = 30
# States of an item that still waits for a human. An item that left the queue without a decision
# time (expired by a deadline fallback) has no known closing time and is left out of the queue series.
WAITING = (ReviewState.OPEN, ReviewState.CLAIMED, ReviewState.ESCALATED)
SCORE_BINS = 20
SCORED = (EventStatus.SCORED, EventStatus.CLEARED, EventStatus.QUEUED, EventStatus.DECIDED)
MAX_MODEL_BARS = 12
MAX_REVIEWER_COLOURS = 9


# ------------------------------------------------------------------------------------------ period


@dataclass(frozen=True)
class Period:
    """The last `days` calendar days (in the current time zone) up to `end`, optionally one source."""

    days: int
    source: Source | None
    start: datetime
    end: datetime

    @property
    def day_list(self) -> list[date]:
        first = timezone.localtime(self.start).date()
        return [first + timedelta(days=i) for i in range(self.days)]


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def dashboard_period(*, days: int = DEFAULT_DAYS, source: Source | None = None, now: datetime | None = None) -> Period:
    if days not in PERIODS:
        days = DEFAULT_DAYS
    end = now or timezone.now()
    today = timezone.localtime(end).date()
    return Period(days=days, source=source, start=_midnight(today - timedelta(days=days - 1)), end=end)


def _by_source(qs: QuerySet, period: Period, path: str = "source") -> QuerySet:
    return qs.filter(**{path: period.source}) if period.source is not None else qs


# ------------------------------------------------------------------------------------------ queue


@dataclass(frozen=True)
class QueuePoint:
    at: datetime
    open: int
    oldest_age: timedelta | None  # None when nothing was waiting


@dataclass(frozen=True)
class QueueDay:
    day: date
    created: int
    decided: int
    open_at_end: int
    oldest_age_at_end: timedelta | None


@dataclass(frozen=True)
class QueueSeries:
    points: list[QueuePoint]
    days: list[QueueDay]


@dataclass
class _Group:
    """Items created in one hour: how many, the first creation time, the last decision time, and
    whether any of them still waits."""

    key: datetime
    n: int = 0
    first: datetime | None = None
    last_close: datetime | None = None
    waiting: bool = False


def queue_series(period: Period) -> QueueSeries:
    """Open items and the age of the oldest open item at every hour of the period and at the end of
    each day, from created_at and decided_at.

    An item is open at t when created_at < t <= decided_at (or it still waits). Three grouped
    queries, each on an index range: items decided in the period by creation hour, items still
    waiting by creation hour, and decisions in the period by hour. Items decided before the period
    never enter. Counts are exact; the oldest age is taken from the first creation time of the
    oldest creation hour that still holds an open item, so it may be high by less than an hour."""
    start, end = period.start, period.end
    items = _by_source(ReviewItem.objects.all(), period)
    created_key = TruncHour("created_at")
    groups: dict[datetime, _Group] = {}
    decided_rows = (
        items.filter(decided_at__gte=start, created_at__lt=end)
        .annotate(k=created_key)
        .values("k")
        .annotate(n=Count("*"), first=Min("created_at"), last=Max("decided_at"))
        .order_by()
    )
    for row in decided_rows:
        g = groups.setdefault(row["k"], _Group(row["k"]))
        g.n += row["n"]
        g.first = row["first"] if g.first is None else min(g.first, row["first"])
        g.last_close = row["last"] if g.last_close is None else max(g.last_close, row["last"])
    waiting_rows = (
        items.filter(decided_at__isnull=True, state__in=WAITING, created_at__lt=end)
        .annotate(k=created_key)
        .values("k")
        .annotate(n=Count("*"), first=Min("created_at"))
        .order_by()
    )
    for row in waiting_rows:
        g = groups.setdefault(row["k"], _Group(row["k"]))
        g.n += row["n"]
        g.first = row["first"] if g.first is None else min(g.first, row["first"])
        g.waiting = True
    closed = sorted(
        (row["k"], row["n"])
        for row in items.filter(decided_at__gte=start, decided_at__lt=end, created_at__lt=end)
        .annotate(k=TruncHour("decided_at"))
        .values("k")
        .annotate(n=Count("*"))
        .order_by()
    )
    ordered = sorted(groups.values(), key=lambda g: g.key)

    # Sample times: every hour boundary in the period, every day's end, and the end itself. Both
    # walks below only move forward, so the whole series costs one pass over the groups.
    day_ends = [min(_midnight(d + timedelta(days=1)), end) for d in period.day_list]
    hours = []
    t = start + timedelta(hours=1)
    while t < end:
        hours.append(t)
        t += timedelta(hours=1)
    samples = sorted({*hours, *day_ends, end})
    at: dict[datetime, QueuePoint] = {}
    opened_i = closed_i = alive_i = 0
    open_count = 0
    for t in samples:
        while opened_i < len(ordered) and ordered[opened_i].key < t:
            open_count += ordered[opened_i].n
            opened_i += 1
        while closed_i < len(closed) and closed[closed_i][0] < t:
            open_count -= closed[closed_i][1]
            closed_i += 1
        # A group whose items have all closed by t stays closed for every later t.
        while alive_i < len(ordered) and not ordered[alive_i].waiting and ordered[alive_i].last_close <= t:  # type: ignore[operator]
            alive_i += 1
        oldest = None
        if alive_i < len(ordered) and ordered[alive_i].key < t and open_count > 0:
            oldest = t - ordered[alive_i].first  # type: ignore[operator]
        at[t] = QueuePoint(at=t, open=open_count, oldest_age=oldest)

    created_per_day: dict[date, int] = defaultdict(int)
    for g in ordered:
        if g.key >= start:
            created_per_day[timezone.localtime(g.key).date()] += g.n
    decided_per_day: dict[date, int] = defaultdict(int)
    for k, n in closed:
        decided_per_day[timezone.localtime(k).date()] += n
    days = [
        QueueDay(
            day=d,
            created=created_per_day[d],
            decided=decided_per_day[d],
            open_at_end=at[e].open,
            oldest_age_at_end=at[e].oldest_age,
        )
        for d, e in zip(period.day_list, day_ends, strict=True)
    ]
    points = [at[t] for t in samples if t > start]
    return QueueSeries(points=points, days=days)


# ------------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class ReviewerDay:
    day: date
    reviewer: str
    approved: int
    overturned: int

    @property
    def total(self) -> int:
        return self.approved + self.overturned


@dataclass(frozen=True)
class ReviewerTotal:
    reviewer: str
    approved: int
    overturned: int
    active_days: int

    @property
    def total(self) -> int:
        return self.approved + self.overturned


def decisions_per_reviewer(period: Period) -> list[ReviewerDay]:
    """Live verdicts (not undone) per reviewer and day; a four-eyes item counts once per reviewer."""
    qs = _by_source(Verdict.objects.filter(created_at__gte=period.start, created_at__lt=period.end), period, "item__source")
    rows = (
        qs.filter(undone_at__isnull=True)
        .annotate(day=TruncDate("created_at"))
        .values("day", "reviewer__username")
        .annotate(n=Count("id"), over=Count("id", filter=Q(verdict=VerdictChoice.OVERTURN)))
        .order_by("day", "reviewer__username")
    )
    return [
        ReviewerDay(day=r["day"], reviewer=r["reviewer__username"], approved=r["n"] - r["over"], overturned=r["over"])
        for r in rows
    ]


def reviewer_totals(rows: list[ReviewerDay]) -> list[ReviewerTotal]:
    acc: dict[str, list[int]] = {}
    for r in rows:
        a = acc.setdefault(r.reviewer, [0, 0, 0])
        a[0] += r.approved
        a[1] += r.overturned
        a[2] += 1
    totals = [ReviewerTotal(reviewer=k, approved=v[0], overturned=v[1], active_days=v[2]) for k, v in acc.items()]
    return sorted(totals, key=lambda t: (-t.total, t.reviewer))


# ------------------------------------------------------------------------------------------ overturn rate


@dataclass(frozen=True)
class Rate:
    """Decided items and how many of them reviewers overturned (false positives of the proposal)."""

    label: str
    decided: int
    overturned: int

    @property
    def rate(self) -> float | None:
        return self.overturned / self.decided if self.decided else None


@dataclass(frozen=True)
class OverturnRates:
    per_day: list[tuple[date, Rate]]
    per_model: list[Rate]  # most decided first

    @property
    def total(self) -> Rate:
        return Rate(
            label="period",
            decided=sum(r.decided for _, r in self.per_day),
            overturned=sum(r.overturned for _, r in self.per_day),
        )


def overturn_rates(period: Period) -> OverturnRates:
    """Items decided in the period, and how many of them were overturned, per day of the decision
    and per model version that scored the event: one query grouped by both.

    An item counts by the verdict that decided it: its latest live verdict, so an undone verdict
    does not count and a four-eyes item counts once. Audit samples are left out: they were not
    proposals, so overturning one says nothing about the proposals' false positives."""
    final = (
        Verdict.objects.filter(item=OuterRef("pk"), undone_at__isnull=True).order_by("-created_at", "-id").values("verdict")[:1]
    )
    qs = ReviewItem.objects.filter(state=ReviewState.DECIDED, decided_at__gte=period.start, decided_at__lt=period.end)
    rows = (
        _by_source(qs.exclude(kind=ItemKind.AUDIT_SAMPLE), period)
        .annotate(final=Subquery(final), day=TruncDate("decided_at"))
        .values("day", "event__model_version_id", "event__model_version__version", "event__model_version__source__name")
        .annotate(n=Count("*"), over=Count("id", filter=Q(final=VerdictChoice.OVERTURN)))
        .order_by()
    )
    days: dict[date, list[int]] = defaultdict(lambda: [0, 0])
    models: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        if r["event__model_version_id"] is None:
            label = "no model"
        else:
            label = f"{r['event__model_version__source__name']} v{r['event__model_version__version']}"
        for acc in (days[r["day"]], models[label]):
            acc[0] += r["n"]
            acc[1] += r["over"]
    per_day = [(d, Rate(label=d.isoformat(), decided=days[d][0], overturned=days[d][1])) for d in period.day_list]
    per_model = sorted(
        (Rate(label=k, decided=v[0], overturned=v[1]) for k, v in models.items()), key=lambda r: (-r.decided, r.label)
    )
    return OverturnRates(per_day=per_day, per_model=per_model)


# ------------------------------------------------------------------------------------------ scores


@dataclass(frozen=True)
class ScoreHistogram:
    source: str
    counts: list[int]  # SCORE_BINS bins of equal width over [0, 1]

    @property
    def total(self) -> int:
        return sum(self.counts)

    def share_at_least(self, score: float) -> float | None:
        """Share of events scored at least `score`, for a score on a bin edge."""
        if not self.total:
            return None
        return sum(self.counts[round(score * SCORE_BINS) :]) / self.total


def score_histograms(period: Period) -> list[ScoreHistogram]:
    """Scores of the events received in the period, per source, in SCORE_BINS bins."""
    score_bin = Greatest(Least(Cast(Floor(F("score") * SCORE_BINS), IntegerField()), Value(SCORE_BINS - 1)), Value(0))
    # Filtering on the scored statuses lets the (status, received_at) index serve the time range, so
    # the busiest table needs no index of its own for the dashboard.
    qs = Event.objects.filter(status__in=SCORED, received_at__gte=period.start, received_at__lt=period.end)
    rows = (
        _by_source(qs, period)
        .filter(score__isnull=False)
        .annotate(b=score_bin)
        .values("source__name", "b")
        .annotate(n=Count("*"))
        .order_by()
    )
    acc: dict[str, list[int]] = {}
    for r in rows:
        acc.setdefault(r["source__name"], [0] * SCORE_BINS)[r["b"]] += r["n"]
    return [ScoreHistogram(source=name, counts=counts) for name, counts in sorted(acc.items())]


# ------------------------------------------------------------------------------------------ plots
# PNG, not SVG: source and user names are attacker-influenced, and a PNG carries no markup a
# browser could run. In matplotlib text "$...$" switches to mathtext (and an unbalanced "$" fails
# the whole drawing), so every name is passed through _text first.

# 6.2 x 3.3 inches at 150 dpi: sharp on high-density screens when shown 620 pixels wide.
WIDTH, HEIGHT, DPI = 6.2, 3.3, 150
PALETTE = ["#1f5fbf", "#b54708", "#067647", "#b42318", "#6941c6", "#0e7090", "#c11574", "#4e5ba6", "#7a5af8", "#667085"]


def _text(s: str) -> str:
    return s.replace("$", r"\$")


def _figure(height: float = HEIGHT):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), dpi=DPI, layout="constrained")
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _style(ax, title: str, period: Period | None = None) -> None:
    ax.set_title(title, loc="left", fontsize=10, fontweight="bold")
    if period is not None:
        ax.set_title(_text(_subtitle(period)), loc="right", fontsize=7.5, color="#5b6470")
    ax.grid(axis="y", color="#e4e7ec", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8.5)


def _bars(ax, x: list[float], heights: list[int], *, bottom: list[int] | None = None, color: str, width: float = 0.8):
    """Vertical bars as one collection: ax.bar makes one patch per bar, which is most of the
    drawing time of a 90-day plot with ten reviewers."""
    from matplotlib.collections import PolyCollection

    bottom = bottom or [0] * len(x)
    verts = [
        [(xi - width / 2, b), (xi - width / 2, b + h), (xi + width / 2, b + h), (xi + width / 2, b)]
        for xi, h, b in zip(x, heights, bottom, strict=True)
        if h
    ]
    collection = PolyCollection(verts, facecolors=color, edgecolors="none")
    ax.add_collection(collection)
    return collection


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data in this period", transform=ax.transAxes, ha="center", va="center", color="#5b6470")


def _date_axis(ax, period: Period) -> None:
    import matplotlib.dates as mdates

    tz = timezone.get_current_timezone()
    locator = mdates.AutoDateLocator(tz=tz, minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=tz))
    ax.set_xlim(period.start, period.end)


def _subtitle(period: Period) -> str:
    where = f"source {period.source.name}" if period.source else "all sources"
    return f"last {period.days} days, {where}"


def plot_queue(period: Period) -> bytes:
    series = queue_series(period)
    fig = _figure(HEIGHT * 1.55)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[1, 1])
    xs = [p.at for p in series.points]
    _style(top, "Open items", period)
    top.step(xs, [p.open for p in series.points], where="post", color=PALETTE[0], linewidth=1.4)
    top.fill_between(xs, [p.open for p in series.points], step="post", color=PALETTE[0], alpha=0.12)
    top.set_ylim(bottom=0)
    top.set_ylabel("items", fontsize=9)
    ages = [p.oldest_age.total_seconds() / 3600 if p.oldest_age is not None else float("nan") for p in series.points]
    finite = [a for a in ages if a == a]
    peak = max(finite) if finite else 0.0
    unit, scale = ("days", 24.0) if peak > 72 else ("minutes", 1 / 60) if peak < 2 else ("hours", 1.0)
    _style(bottom, f"Age of the oldest open item ({unit})")
    # Markers too: a queue that began within the last hour has one sample, which a line cannot draw.
    bottom.plot(xs, [a / scale for a in ages], color=PALETTE[1], linewidth=1.4, marker="o", markersize=2.5)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel(unit, fontsize=9)
    if not any(p.open for p in series.points):
        _no_data(top)
    _date_axis(bottom, period)
    return _png(fig)


def plot_decisions(period: Period) -> bytes:
    import matplotlib.dates as mdates

    rows = decisions_per_reviewer(period)
    totals = reviewer_totals(rows)
    # The busiest reviewers get their own colour; the rest share one bar segment.
    named = (
        [t.reviewer for t in totals[:MAX_REVIEWER_COLOURS]]
        if len(totals) > MAX_REVIEWER_COLOURS + 1
        else [t.reviewer for t in totals]
    )
    others = "other reviewers"
    per: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per[r.reviewer if r.reviewer in named else others][r.day] += r.total
    fig = _figure()
    ax = fig.subplots()
    _style(ax, "Decisions per reviewer per day", period)
    days = period.day_list
    x = [mdates.date2num(_midnight(d) + timedelta(hours=12)) for d in days]
    bottom = [0] * len(days)
    handles, labels = [], []
    for i, name in enumerate([*named, *([others] if others in per else [])]):
        heights = [per[name].get(d, 0) for d in days]
        colour = PALETTE[i % len(PALETTE)] if name != others else "#98a2b3"
        handles.append(_bars(ax, x, heights, bottom=bottom, color=colour))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        labels.append(_text(name))
    ax.set_ylim(0, max(bottom, default=0) * 1.08 or 1)
    if handles:
        # Labels passed explicitly: matplotlib would drop a label starting with "_" otherwise.
        ax.legend(handles, labels, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    else:
        _no_data(ax)
    ax.set_ylabel("verdicts", fontsize=9)
    ax.xaxis_date(timezone.get_current_timezone())
    _date_axis(ax, period)
    return _png(fig)


def plot_overturn_per_day(period: Period) -> bytes:
    import matplotlib.dates as mdates

    rates = overturn_rates(period).per_day
    fig = _figure()
    ax = fig.subplots()
    _style(ax, "Overturn rate per day", period)
    x = [mdates.date2num(_midnight(d) + timedelta(hours=12)) for d, _ in rates]
    y = [r.rate * 100 if r.rate is not None else float("nan") for _, r in rates]
    counts = ax.twinx()
    decided = [r.decided for _, r in rates]
    _bars(counts, x, decided, color="#d0d5dd")
    counts.set_ylim(0, max(decided, default=0) * 1.08 or 1)
    counts.set_ylabel("decided items", fontsize=9, color="#5b6470")
    counts.tick_params(labelsize=8.5, colors="#5b6470")
    for side in ("top",):
        counts.spines[side].set_visible(False)
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(x, y, marker="o", markersize=4, color=PALETTE[3], linewidth=1.4, label="overturn rate", clip_on=False)
    ax.set_ylim(0, 100)
    ax.set_ylabel("overturned, % of decided", fontsize=9)
    if not any(r.decided for _, r in rates):
        _no_data(ax)
    ax.xaxis_date(timezone.get_current_timezone())
    _date_axis(ax, period)
    return _png(fig)


def plot_overturn_per_model(period: Period) -> bytes:
    rates = overturn_rates(period).per_model[:MAX_MODEL_BARS]
    fig = _figure(max(2.2, 0.9 + 0.32 * len(rates)))
    ax = fig.subplots()
    _style(ax, "Overturn rate per model version", period)
    ax.grid(axis="x", color="#e4e7ec", linewidth=0.8)
    ax.grid(axis="y", visible=False)
    labels = [_text(r.label) for r in reversed(rates)]
    values = [(r.rate or 0) * 100 for r in reversed(rates)]
    ypos = list(range(len(rates)))
    ax.barh(ypos, values, color=PALETTE[3], height=0.6)
    ax.set_yticks(ypos, labels)
    for y, r in zip(ypos, reversed(rates), strict=True):
        ax.text(min((r.rate or 0) * 100 + 1.5, 80), y, f"{r.overturned} of {r.decided}", va="center", fontsize=8, color="#1d232a")
    ax.set_xlim(0, 100)
    ax.set_xlabel("overturned, % of decided items", fontsize=9)
    if not rates:
        ax.set_yticks([])
        _no_data(ax)
    return _png(fig)


def plot_scores(period: Period) -> bytes:
    hists = score_histograms(period)
    fig = _figure()
    ax = fig.subplots()
    _style(ax, "Scores of incoming events", period)
    edges = [i / SCORE_BINS for i in range(SCORE_BINS + 1)]
    handles = []
    for i, h in enumerate(hists):
        shares = [c / h.total * 100 for c in h.counts]
        colour = PALETTE[i % len(PALETTE)]
        handles.append(ax.stairs(shares, edges, color=colour, linewidth=1.6))
        ax.stairs(shares, edges, color=colour, alpha=0.08, fill=True)
    if period.source is not None and hasattr(period.source, "policy"):
        ax.axvline(period.source.policy.review_threshold, color="#1d232a", linestyle="--", linewidth=1)
        ax.text(
            period.source.policy.review_threshold,
            0.98,
            " review threshold",
            transform=ax.get_xaxis_transform(),
            fontsize=8,
            va="top",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("score", fontsize=9)
    ax.set_ylabel("% of the source's events", fontsize=9)
    if hists:
        ax.legend(handles, [_text(f"{h.source} (n={h.total:,})") for h in hists], fontsize=8, frameon=False)
    else:
        _no_data(ax)
    return _png(fig)


@dataclass(frozen=True)
class Plot:
    name: str
    title: str
    render: Callable[[Period], bytes] = field(repr=False)


PLOTS = {
    p.name: p
    for p in (
        Plot("queue", "Queue depth and age of the oldest open item", plot_queue),
        Plot("decisions", "Decisions per reviewer per day", plot_decisions),
        Plot("overturn-daily", "Overturn rate per day", plot_overturn_per_day),
        Plot("overturn-models", "Overturn rate per model version", plot_overturn_per_model),
        Plot("scores", "Score distribution of incoming events", plot_scores),
    )
}


# ------------------------------------------------------------------------------------------ audit trail


def audit_entry_list(
    *,
    actor: str = "",
    verb: str = "",
    object_type: str = "",
    object_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    bulk: str = "",
) -> QuerySet[AuditEntry]:
    """Audit entries, newest first, filtered by exact actor, verb, object type and id, by a
    creation-time range [since, until), and by bulk decision (its items' entries and its summary)."""
    qs = AuditEntry.objects.order_by("-id")
    if bulk:
        qs = qs.filter(Q(after__bulk__id=bulk) | Q(object_type="bulk", object_id=bulk))
    if actor:
        qs = qs.filter(actor_label=actor)
    if verb:
        qs = qs.filter(verb=verb)
    if object_type:
        qs = qs.filter(object_type=object_type)
    if object_id:
        qs = qs.filter(object_id=object_id)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    return qs
