"""Administrators' pages: the dashboard with its plots, and the read-only audit trail."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from urllib.parse import urlencode

from django import forms
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.views.decorators.http import require_safe

from reviews import dashboard
from reviews.models import Source
from reviews.views import admin_required

AUDIT_PAGE_SIZE = 50


def _period(request) -> dashboard.Period:
    try:
        days = int(request.GET.get("days", dashboard.DEFAULT_DAYS))
    except ValueError:
        days = dashboard.DEFAULT_DAYS
    name = request.GET.get("source", "")
    source = Source.objects.select_related("policy").filter(name=name).first() if name else None
    return dashboard.dashboard_period(days=days, source=source)


def age_text(age: timedelta | None) -> str:
    if age is None:
        return "–"
    hours = age.total_seconds() / 3600
    if hours < 1:
        return f"{max(age.total_seconds() // 60, 0):.0f} min"
    if hours < 72:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def _query(period: dashboard.Period, **override) -> str:
    params = {"days": period.days, "source": period.source.name if period.source else ""}
    params.update(override)
    return urlencode({k: v for k, v in params.items() if v})


@admin_required
@require_safe
def dashboard_page(request):
    period = _period(request)
    queue = dashboard.queue_series(period)
    reviewer_days = dashboard.decisions_per_reviewer(period)
    rates = dashboard.overturn_rates(period)
    scores = dashboard.score_histograms(period)
    query = _query(period)
    days = [
        {
            "day": q.day,
            "created": q.created,
            "decided": r.decided,
            "overturned": r.overturned,
            "rate": r.rate,
            "open": q.open_at_end,
            "oldest": age_text(q.oldest_age_at_end),
        }
        for q, (_, r) in zip(reversed(queue.days), reversed(rates.per_day), strict=True)  # newest first
    ]
    return render(
        request,
        "reviews/dashboard.html",
        {
            "period": period,
            "periods": [{"days": d, "query": _query(period, days=d), "current": d == period.days} for d in dashboard.PERIODS],
            "source_links": [
                {"name": "all", "query": _query(period, source=""), "current": period.source is None},
                *(
                    {"name": s.name, "query": _query(period, source=s.name), "current": s == period.source}
                    for s in Source.objects.order_by("name")
                ),
            ],
            "plots": [
                {"name": p.name, "title": p.title, "src": f"{reverse('reviews:dashboard-plot', args=[p.name])}?{query}"}
                for p in dashboard.PLOTS.values()
            ],
            "open_now": queue.points[-1].open if queue.points else 0,
            "oldest_now": age_text(queue.points[-1].oldest_age if queue.points else None),
            "total": rates.total,
            "days": days,
            "reviewers": dashboard.reviewer_totals(reviewer_days),
            "models": rates.per_model,
            "scores": [{"h": h, "at_review": h.share_at_least(0.5), "at_high": h.share_at_least(0.8)} for h in scores],
        },
    )


@admin_required
@require_safe
def dashboard_plot(request, name: str):
    plot = dashboard.PLOTS.get(name)
    if plot is None:
        raise Http404("no such plot")
    response = HttpResponse(plot.render(_period(request)), content_type="image/png")
    # Admin-only numbers: never in a shared cache; a short private cache spares a reload.
    patch_cache_control(response, private=True, max_age=60)
    response["X-Content-Type-Options"] = "nosniff"
    return response


# ------------------------------------------------------------------------------------------ audit


class AuditFilterForm(forms.Form):
    actor = forms.CharField(required=False, max_length=150)
    verb = forms.CharField(required=False, max_length=64)
    object_type = forms.CharField(required=False, max_length=64, label="Object type")
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    bulk = forms.CharField(required=False, max_length=64, label="Bulk decision")
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def selector_kwargs(self) -> dict:
        data = self.cleaned_data
        since, until = data.get("since"), data.get("until")
        return {
            "actor": data.get("actor", "").strip(),
            "verb": data.get("verb", "").strip(),
            "object_type": data.get("object_type", "").strip(),
            "object_id": data.get("object_id", "").strip(),
            "since": timezone.make_aware(datetime.combine(since, time.min)) if since else None,
            # "To" is a whole day: entries up to the end of it.
            "until": timezone.make_aware(datetime.combine(until + timedelta(days=1), time.min)) if until else None,
            "bulk": data.get("bulk", "").strip(),
        }


def _pretty(value) -> str:
    if value is None:
        return ""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _bulk_of(entry) -> dict | None:
    """{"id", "short", "count", "query"} when the entry is part (or the summary) of a bulk decision."""
    bulk = entry.after.get("bulk") if isinstance(entry.after, dict) else None
    if not isinstance(bulk, dict) or not isinstance(bulk.get("id"), str):
        return None
    return {"id": bulk["id"], "short": bulk["id"][:8], "count": bulk.get("count"), "query": urlencode({"bulk": bulk["id"]})}


@admin_required
@require_safe
def audit_page(request):
    form = AuditFilterForm(request.GET)
    filters = {
        k: v for k, v in request.GET.items() if k in ("actor", "verb", "object_type", "object_id", "since", "until", "bulk") and v
    }
    entries: list = []
    newer = older = None
    if form.is_valid():
        qs = dashboard.audit_entry_list(**form.selector_kwargs())
        before, after = form.cleaned_data.get("before"), form.cleaned_data.get("after")
        # Keyset pages on the primary key: as fast on page 1,000 as on page 1, and no COUNT(*)
        # over a table that only grows.
        if after is not None:
            entries = list(qs.filter(id__gt=after).order_by("id")[: AUDIT_PAGE_SIZE + 1])
            has_newer = len(entries) > AUDIT_PAGE_SIZE
            entries = entries[:AUDIT_PAGE_SIZE][::-1]
            has_older = bool(entries) and qs.filter(id__lt=entries[-1].id).exists()
        else:
            entries = list((qs if before is None else qs.filter(id__lt=before))[: AUDIT_PAGE_SIZE + 1])
            has_older = len(entries) > AUDIT_PAGE_SIZE
            entries = entries[:AUDIT_PAGE_SIZE]
            has_newer = before is not None and bool(entries) and qs.filter(id__gt=entries[0].id).exists()
        if has_newer:
            newer = urlencode({**filters, "after": entries[0].id})
        if has_older:
            older = urlencode({**filters, "before": entries[-1].id})
    rows = [
        {
            "entry": e,
            "before": _pretty(e.before),
            "after": _pretty(e.after),
            "item_url": reverse("reviews:item", args=[int(e.object_id)])
            if e.object_type == "reviews.reviewitem" and e.object_id.isdigit()
            else None,
            "actor_query": urlencode({"actor": e.actor_label}),
            "verb_query": urlencode({"verb": e.verb}),
            "object_query": urlencode({"object_type": e.object_type, "object_id": e.object_id}),
            "bulk": _bulk_of(e),
        }
        for e in entries
    ]
    return render(
        request,
        "reviews/audit.html",
        {"form": form, "rows": rows, "newer": newer, "older": older, "filtered": bool(filters), "page_size": AUDIT_PAGE_SIZE},
    )
