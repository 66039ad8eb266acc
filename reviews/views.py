"""The review console: queue, item page, decisions; and for admins, models and policies."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from reviews import roles, selectors, services
from reviews.choices import Action, ItemKind, ReviewState, VerdictChoice
from reviews.forms import DecisionForm, PolicyForm
from reviews.models import AuditEntry, ReasonCode, ReviewItem, Source, Verdict


def _role_required(check, role: str):
    """A view decorator: log in first, then the role, or 403."""

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapped(request, *args, **kwargs):
            if not check(request.user):
                raise PermissionDenied(f"{role} role required")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


reviewer_required = _role_required(roles.is_reviewer, "reviewer")
admin_required = _role_required(roles.is_admin, "admin")


def _last_undo(user, *, item_id: int | None = None) -> dict:
    """The undo offered for the reviewer's latest verdict on another item (the `u` key)."""
    last = selectors.verdict_last_undoable(reviewer=user)
    if last is None or last.item_id == item_id:
        return {"last_undoable": None}
    return {"last_undoable": last, "last_undo_until": last.created_at + timedelta(seconds=settings.SECAI_UNDO_SECONDS)}


def _action_choices() -> list[tuple[str, str]]:
    """Every action any source defines, built-in ones first, for the queue's filter."""
    from actions.models import ActionType

    choices = dict(Action.choices)
    for name, label in ActionType.objects.order_by("severity", "name").values_list("name", "label"):
        choices.setdefault(name, label)
    return list(choices.items())


@reviewer_required
def queue(request):
    filters = selectors.QueueFilters.from_query(request.GET)
    rows, next_cursor = selectors.review_queue_page(filters=filters, viewer=request.user, after=request.GET.get("after", ""))
    context = {
        "rows": rows,
        "next_cursor": next_cursor,
        "filters": filters,
        "ignored_filters": selectors.queue_filters_refused(request.GET, filters),
        "query": filters.as_query(),
        "my_claim": selectors.review_item_current_claim(reviewer=request.user),
    }
    if request.htmx and request.GET.get("after"):
        return render(request, "reviews/partials/_queue_rows.html", context)  # "load more" appends rows
    context.update(
        {
            **_last_undo(request.user),
            "counts": selectors.review_queue_counts(filters=filters, viewer=request.user),
            "states": ["open", "claimed", "active", "escalated", "decided", "all"],
            "actions": _action_choices(),
            "kinds": ItemKind.choices,
            "sources": selectors.sources_reviewable(user=request.user).order_by("name"),
        }
    )
    if request.htmx:
        return render(request, "reviews/partials/_queue_table.html", context)
    return render(request, "reviews/queue.html", context)


def _queue_empty_message(request) -> None:
    skipped, back_at = selectors.item_skips_pending(reviewer=request.user)
    if skipped:
        messages.info(
            request,
            f"Nothing else is waiting for you: the {skipped} item(s) you skipped are left to others"
            f" and come back to you from {back_at:%H:%M} UTC. Open one from the queue to take it now.",
        )
    else:
        messages.info(request, "The queue is empty: nothing is waiting for review.")


def _to_next_item(request, *, source: Source | None = None):
    item = services.review_item_claim_next(reviewer=request.user, source=source)
    if item is None:
        _queue_empty_message(request)
        return redirect("reviews:queue")
    return redirect("reviews:item", pk=item.pk)


@reviewer_required
@require_POST
def claim_next(request):
    source = selectors.sources_reviewable(user=request.user).filter(name=request.POST.get("source", "")).first()
    return _to_next_item(request, source=source)


@reviewer_required
def item_detail(request, pk: int):
    item = get_object_or_404(selectors.review_queue(viewer=request.user, state=None), pk=pk)
    user = request.user
    services.explanation_ensure(item.event)
    verdicts = list(item.verdicts.select_related("reviewer").order_by("created_at"))
    live = [v for v in verdicts if v.undone_at is None]
    shown_verdicts, hidden_verdicts = selectors.verdicts_visible(verdicts=verdicts, item_state=item.state, viewer=user)
    audit = AuditEntry.objects.filter(object_type="reviews.reviewitem", object_id=str(item.pk)).order_by("created_at")
    already = any(v.reviewer_id == user.pk for v in live)
    is_admin = roles.is_admin(user)
    holder_free = not item.claim_live or item.claimed_by_id == user.pk
    takeable = holder_free and (
        item.state in (ReviewState.OPEN, ReviewState.CLAIMED) or (item.state == ReviewState.ESCALATED and is_admin)
    )
    can_decide = not already and takeable
    mine = item.claim_live and item.claimed_by_id == user.pk
    undo_window = timedelta(seconds=settings.SECAI_UNDO_SECONDS)
    my_undoable = next(
        (v for v in reversed(live) if v.reviewer_id == user.pk and v.created_at >= timezone.now() - undo_window), None
    )
    return render(
        request,
        "reviews/item.html",
        {
            "item": item,
            "event": item.event,
            "attributes": sorted(item.event.attributes.items()),
            "form": DecisionForm(initial={"then": "next"}),
            "reasons": ReasonCode.objects.filter(active=True),
            "reason_labels": dict(ReasonCode.objects.values_list("code", "label")),
            "verdicts": shown_verdicts,
            "hidden_verdicts": hidden_verdicts,
            "live_count": len(live),
            "audit": audit,
            "can_decide": can_decide,
            "can_claim": can_decide and not mine,
            "already": already,
            "mine": mine,
            "my_undoable": my_undoable,
            "undo_until": my_undoable.created_at + undo_window if my_undoable else None,
            "skip_minutes": settings.SECAI_SKIP_SECONDS // 60,
            **({} if my_undoable else _last_undo(user, item_id=item.pk)),
            "history": selectors.entity_history(event=item.event, viewer=user),
            "similar": selectors.similar_decided_events(event=item.event),
            **_item_actions(item, viewer=user),
        },
    )


def _item_actions(item: ReviewItem, *, viewer) -> dict:
    """What the actions side knows about an item: its deliveries, appeals and list entries. An
    appeal names the verdict it is against only where the verdicts card would show that verdict:
    an appeal reopens its item, and the reviewer deciding it again forms their own opinion."""
    from actions import selectors as action_selectors

    listed = action_selectors.entities_listed(source_id=item.source_id, entities=[item.event.entity])
    appeals = list(action_selectors.appeals().filter(event_id=item.event_id).select_related("original_verdict__reviewer"))
    for appeal in appeals:
        original = appeal.original_verdict
        appeal.original_hidden = original is not None and selectors.verdict_hidden(
            verdict=original, item_state=item.state, viewer=viewer
        )
    return {
        "deliveries": list(
            action_selectors.deliveries(event_id=item.event_id).filter(kind__in=["execute", "reverse"]).order_by("id")
        ),
        "appeals": appeals,
        "allowlisted": listed["allow"].get(item.event.entity),
        "blocklisted": listed["block"].get(item.event.entity),
        # The checkbox lists the whole entity for this long (verdict_submit), so its label says so.
        "allowlist_days": settings.SECAI_ALLOWLIST_DAYS,
        "allowlist_until": timezone.now() + timedelta(days=settings.SECAI_ALLOWLIST_DAYS),
    }


@reviewer_required
@require_POST
def verdict_undo(request, pk: int):
    visible = selectors.scoped_to_reviewer(Verdict.objects.all(), viewer=request.user, field="item__source_id")
    verdict = get_object_or_404(visible.select_related("item"), pk=pk)
    try:
        item = services.verdict_undo(verdict=verdict, reviewer=request.user)
    except services.ServiceError as exc:  # a conflict, or the assignment was withdrawn meanwhile
        messages.error(request, f"Not undone. {exc.message}")
        return redirect("reviews:item", pk=verdict.item_id)
    messages.success(request, f"Your verdict on item {item.pk} is undone; the item is yours to decide again.")
    return redirect("reviews:item", pk=item.pk)


def _safe_back(request) -> str:
    """The page to return to after a bulk decision, if it is one of ours; else the queue."""
    back = request.POST.get("back", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return back
    return reverse("reviews:queue")


def _bulk_confirm_page(request, *, ids: list[int], too_many: bool, scope: str, verdict: str, reason: str, note: str):
    items = list(
        selectors.scoped_to_reviewer(ReviewItem.objects.filter(pk__in=ids), viewer=request.user)
        .select_related("event", "source")
        .order_by(*selectors.QUEUE_ORDER)[:20]
    )
    return render(
        request,
        "reviews/bulk_confirm.html",
        {
            "ids": ids,
            "count": len(ids),
            "too_many": too_many,
            "max_bulk": settings.SECAI_MAX_BULK,
            "scope": scope,
            "items": items,
            "verdict": verdict if verdict in VerdictChoice.values else "",
            "reason": reason,
            "note": note,
            "reasons": ReasonCode.objects.filter(active=True),
            "back": _safe_back(request),
        },
    )


@reviewer_required
def bulk_decide(request):
    """Bulk decision in two steps: the first POST shows how many items will change; the second,
    with confirm=yes, applies the verdict to exactly the items that were shown."""
    if request.method != "POST":
        return redirect("reviews:queue")
    verdict, reason, note = request.POST.get("verdict", ""), request.POST.get("reason", ""), request.POST.get("note", "")[:4000]
    if request.POST.get("confirm") == "yes":
        try:
            ids = [int(x) for x in request.POST.getlist("ids")][: settings.SECAI_MAX_BULK]
        except ValueError:
            return HttpResponseBadRequest("bad item ids")
        try:
            result = services.verdict_submit_bulk(item_ids=ids, reviewer=request.user, verdict=verdict, reason=reason, note=note)
        except services.ServiceError as exc:
            # Back to the same confirmation, choices kept: the reviewer fixes the reason and confirms.
            messages.error(request, f"Nothing was decided: {exc.message}.")
            scope = request.POST.get("scope", "")[:200]
            return _bulk_confirm_page(request, ids=ids, too_many=False, scope=scope, verdict=verdict, reason=reason, note=note)
        text = f"Bulk {verdict}: {result.decided} item(s) decided"
        if result.first_opinions:
            text += f", {result.first_opinions} waiting for a second opinion"
        if result.skipped:
            text += f"; {len(result.skipped)} skipped (already decided or held by another reviewer)"
        messages.success(request, text + ".")
        return redirect(_safe_back(request))
    if request.POST.get("cluster"):
        filters = selectors.QueueFilters.from_query(request.POST)
        cluster = next(
            (
                c
                for c in selectors.open_item_clusters(filters=filters, viewer=request.user)
                if c["key"] == request.POST["cluster"]
            ),
            None,
        )
        ids = cluster["ids"] if cluster else []
        scope = f"cluster {request.POST['cluster']}"
    else:
        filters = selectors.QueueFilters.from_query(request.POST)
        qs = selectors.review_queue_filtered(
            filters=selectors.QueueFilters(**{**filters.__dict__, "state": ReviewState.OPEN}), viewer=request.user
        )
        ids = list(qs.order_by(*selectors.QUEUE_ORDER).values_list("pk", flat=True)[: settings.SECAI_MAX_BULK + 1])
        scope = "the open items matching the filters"
    too_many = len(ids) > settings.SECAI_MAX_BULK
    return _bulk_confirm_page(
        request, ids=ids[: settings.SECAI_MAX_BULK], too_many=too_many, scope=scope, verdict=verdict, reason=reason, note=note
    )


@reviewer_required
def clusters(request):
    filters = selectors.QueueFilters.from_query(request.GET)
    return render(
        request,
        "reviews/clusters.html",
        {
            "clusters": selectors.open_item_clusters(filters=filters, viewer=request.user)[:50],
            "filters": filters,
            "query": filters.as_query(),
        },
    )


@reviewer_required
@require_POST
def item_claim(request, pk: int):
    item = get_object_or_404(selectors.review_queue(viewer=request.user, state=None), pk=pk)
    try:
        services.review_item_claim(item=item, reviewer=request.user)
        messages.success(request, "You hold this item now.")
    except services.ServiceError as exc:  # a conflict, or the assignment was withdrawn meanwhile
        messages.error(request, exc.message)
    return redirect("reviews:item", pk=pk)


@reviewer_required
@require_POST
def item_release(request, pk: int):
    item = get_object_or_404(selectors.review_queue(viewer=request.user, state=None), pk=pk)
    try:
        services.review_item_release(item=item, reviewer=request.user)
        messages.success(request, "Released: the item is back in the queue.")
    except services.ServiceError as exc:  # a conflict, or the assignment was withdrawn meanwhile
        messages.error(request, exc.message)
    return redirect("reviews:queue")


@reviewer_required
@require_POST
def item_skip(request, pk: int):
    item = get_object_or_404(selectors.review_queue(viewer=request.user, state=None), pk=pk)
    try:
        skip = services.review_item_skip(item=item, reviewer=request.user)
    except services.ServiceError as exc:  # a conflict, or the assignment was withdrawn meanwhile
        messages.error(request, f"Not skipped. {exc.message}")
        return redirect("reviews:item", pk=pk)
    messages.info(
        request,
        f"Skipped item {item.pk}: it is back in the queue for others, and you will not be handed it again"
        f" before {skip.until:%H:%M} UTC.",
    )
    return _to_next_item(request)


@reviewer_required
@require_POST
def item_decide(request, pk: int):
    item = get_object_or_404(selectors.review_queue(viewer=request.user, state=None), pk=pk)
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
            allowlist_entity=form.cleaned_data["allowlist_entity"],
        )
    except services.ServiceError as exc:  # a conflict, or the assignment was withdrawn meanwhile
        messages.error(request, f"Your decision was not recorded. {exc.message}")
        return redirect("reviews:item", pk=pk)
    item.refresh_from_db()
    if item.kind == ItemKind.AUDIT_SAMPLE:
        word = "Threat" if verdict.verdict == VerdictChoice.APPROVE else "Not a threat"
    else:
        word = "Approved" if verdict.verdict == VerdictChoice.APPROVE else "Overturned"
    if item.state == ReviewState.DECIDED:
        messages.success(request, f"{word}: item {item.pk} ({item.event.external_id}) is decided.")
        if form.cleaned_data["allowlist_entity"]:
            messages.success(
                request,
                f"{item.event.entity} is on the allow list of {item.source.name} for {settings.SECAI_ALLOWLIST_DAYS} days.",
            )
    elif item.state == ReviewState.ESCALATED:
        messages.warning(request, f"{word}: item {item.pk} — the reviewers disagree, so it is escalated to an admin.")
    else:
        messages.success(request, f"{word}: item {item.pk} recorded as the first opinion; a second reviewer must agree.")
    if form.cleaned_data.get("then") == "next":
        return _to_next_item(request)
    return redirect("reviews:queue")


@admin_required
def policy_page(request, name: str):
    source = get_object_or_404(Source, name=name)
    policy = source.policy
    current = {t["action"]: t["min_score"] for t in policy.thresholds}
    if request.method == "POST":
        form = PolicyForm(request.POST, source=source)
        if form.is_valid():
            services.policy_update(
                policy=policy,
                actor=request.user,
                thresholds=form.thresholds(),
                review_threshold=form.cleaned_data["review_threshold"],
                four_eyes_actions=form.cleaned_data["four_eyes_actions"],
            )
            messages.success(request, f"Policy of {source.name} saved. New scores use it; events already scored keep theirs.")
            return redirect("reviews:policy", name=name)
    else:
        form = PolicyForm(
            initial={"review_threshold": policy.review_threshold, "four_eyes_actions": policy.four_eyes_actions, **current},
            source=source,
        )
    from actions.choices import Mode
    from actions.selectors import action_types_of

    types = action_types_of(source_id=source.pk).values()
    acting = sorted(t.label for t in types if t.mode == Mode.ACT_THEN_REVIEW)
    shadow = sorted(t.label for t in types if t.mode == Mode.SHADOW)
    context = {"source": source, "policy": policy, "form": form, "acting": acting, "shadow": shadow}
    return render(request, "reviews/policy.html", context)
