"""The review console: queue, item page, decisions; and for admins, models and policies."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from reviews import roles, selectors, services
from reviews.choices import ReviewState
from reviews.forms import DecisionForm, PolicyForm
from reviews.models import AuditEntry, Source


def reviewer_required(view):
    @login_required
    def wrapped(request, *args, **kwargs):
        if not roles.is_reviewer(request.user):
            raise PermissionDenied("reviewer role required")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    return wrapped


def admin_required(view):
    @login_required
    def wrapped(request, *args, **kwargs):
        if not roles.is_admin(request.user):
            raise PermissionDenied("admin role required")
        return view(request, *args, **kwargs)

    wrapped.__name__ = view.__name__
    return wrapped


@reviewer_required
def queue(request):
    state = request.GET.get("state", "active")
    if state not in ("active", *ReviewState.values):
        state = "active"
    source = Source.objects.filter(name=request.GET.get("source", "")).first()
    items = selectors.review_queue(state=state, source=source)
    page = Paginator(items, 50).get_page(request.GET.get("page"))
    return render(
        request,
        "reviews/queue.html",
        {
            "page": page,
            "state": state,
            "states": ["active", *ReviewState.values],
            "sources": Source.objects.order_by("name"),
            "source": source,
            "my_claim": selectors.review_item_current_claim(reviewer=request.user),
        },
    )


@reviewer_required
@require_POST
def claim_next(request):
    source = Source.objects.filter(name=request.POST.get("source", "")).first()
    item = services.review_item_claim_next(reviewer=request.user, source=source)
    if item is None:
        messages.info(request, "The queue is empty: nothing is waiting for review.")
        return redirect("reviews:queue")
    return redirect("reviews:item", pk=item.pk)


@reviewer_required
def item_detail(request, pk: int):
    item = get_object_or_404(selectors.review_queue(state=None), pk=pk)
    verdicts = item.verdicts.select_related("reviewer").order_by("created_at")
    audit = AuditEntry.objects.filter(object_type="reviews.reviewitem", object_id=str(item.pk)).order_by("created_at")
    can_decide = item.state == ReviewState.OPEN or (
        item.state == ReviewState.CLAIMED and (item.claimed_by_id == request.user.pk or item.claim_expires_at is None)
    )
    return render(
        request,
        "reviews/item.html",
        {
            "item": item,
            "event": item.event,
            "attributes": sorted(item.event.attributes.items()),
            "form": DecisionForm(initial={"then": "next"}),
            "verdicts": verdicts,
            "audit": audit,
            "can_decide": can_decide,
            "mine": item.state == ReviewState.CLAIMED and item.claimed_by_id == request.user.pk,
        },
    )


@reviewer_required
@require_POST
def item_claim(request, pk: int):
    item = get_object_or_404(selectors.review_queue(state=None), pk=pk)
    try:
        services.review_item_claim(item=item, reviewer=request.user)
        messages.success(request, "You hold this item now.")
    except services.ItemConflict as exc:
        messages.error(request, exc.message)
    return redirect("reviews:item", pk=pk)


@reviewer_required
@require_POST
def item_release(request, pk: int):
    item = get_object_or_404(selectors.review_queue(state=None), pk=pk)
    try:
        services.review_item_release(item=item, reviewer=request.user)
        messages.success(request, "Released: the item is back in the queue.")
    except services.ItemConflict as exc:
        messages.error(request, exc.message)
    return redirect("reviews:queue")


@reviewer_required
@require_POST
def item_decide(request, pk: int):
    item = get_object_or_404(selectors.review_queue(state=None), pk=pk)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(
            request, "Choose approve or overturn and a reason. " + " ".join(e for errs in form.errors.values() for e in errs)
        )
        return redirect("reviews:item", pk=pk)
    try:
        verdict = services.verdict_submit(
            item=item,
            reviewer=request.user,
            verdict=form.cleaned_data["verdict"],
            reason=form.cleaned_data["reason"],
            note=form.cleaned_data["note"],
        )
    except services.ItemConflict as exc:
        messages.error(request, f"Your decision was not recorded. {exc.message}")
        return redirect("reviews:item", pk=pk)
    word = "Approved" if verdict.verdict == "approve" else "Overturned"
    messages.success(request, f"{word}: item {item.pk} ({item.event.external_id}) is decided.")
    if form.cleaned_data.get("then") == "next":
        nxt = services.review_item_claim_next(reviewer=request.user)
        if nxt is not None:
            return redirect("reviews:item", pk=nxt.pk)
        messages.info(request, "The queue is empty: nothing is waiting for review.")
    return redirect("reviews:queue")


@admin_required
def policy_page(request, name: str):
    source = get_object_or_404(Source, name=name)
    policy = source.policy
    current = {t["action"]: t["min_score"] for t in policy.thresholds}
    if request.method == "POST":
        form = PolicyForm(request.POST)
        if form.is_valid():
            services.policy_update(
                policy=policy,
                actor=request.user,
                thresholds=form.thresholds(),
                review_threshold=form.cleaned_data["review_threshold"],
            )
            messages.success(request, f"Policy of {source.name} saved. New scores use it; events already scored keep theirs.")
            return redirect("reviews:policy", name=name)
    else:
        form = PolicyForm(initial={"review_threshold": policy.review_threshold, **current})
    return render(request, "reviews/policy.html", {"source": source, "policy": policy, "form": form})
