"""Console pages for actions: action types and modes, executors, subscriptions (admins), the
delivery log with its retry button (admins), allow and block lists (reviewers read, admins edit)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from actions import selectors, services
from actions.choices import DeliveryKind, DeliveryState, ListKind
from actions.forms import ActionTypeCreateForm, ActionTypeForm, ExecutorForm, ListEntryForm, SubscriptionForm
from actions.models import ActionType, Delivery, Executor, ListEntry, Subscription
from actions.services import items_past_deadline
from reviews import roles
from reviews.models import Source
from reviews.selectors import scoped_to_reviewer, sources_reviewable
from reviews.services import ServiceError
from reviews.views import admin_required, reviewer_required


def _form_error(form, exc: Exception) -> None:
    if isinstance(exc, ServiceError):
        field = exc.field if exc.field in form.fields else None
        form.add_error(field, exc.message)
    elif isinstance(exc, ValidationError):
        for field, errors in (exc.message_dict if hasattr(exc, "error_dict") else {None: exc.messages}).items():
            form.add_error(field if field in form.fields else None, errors)


@admin_required
def overview(request):
    """Action types of every source, with their executor, mode and deadline; a form to add one."""
    form = ActionTypeCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = {k: v for k, v in form.cleaned_data.items() if k != "source"}
        try:
            at = services.action_type_save(actor=request.user, source=form.cleaned_data["source"], **data)
        except (ServiceError, ValidationError) as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Action {at.name} added to {at.source.name}. Use it in the source's policy thresholds.")
            return redirect("actions:overview")
    sources = []
    for source in Source.objects.order_by("name"):
        types = sorted(selectors.action_types_of(source_id=source.pk).values(), key=lambda t: (t.severity, t.name))
        sources.append({"source": source, "types": types, "propose_only": selectors.source_propose_only(source_id=source.pk)})
    return render(
        request,
        "actions/overview.html",
        {"sources": sources, "form": form, "executors": Executor.objects.order_by("name")},
    )


@admin_required
def action_type_edit(request, pk: int):
    at = get_object_or_404(ActionType.objects.select_related("source", "executor"), pk=pk)
    form = ActionTypeForm(request.POST or None, instance=at)
    context = {"form": form, "title": f"Action {at.name} of {at.source.name}", "object": at}
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        new_deadline = {k: d.get(k) for k in ("deadline_minutes", "deadline_fallback", "deadline_verdict")}
        old_deadline = {
            "deadline_minutes": at.deadline_minutes,
            "deadline_fallback": at.deadline_fallback,
            "deadline_verdict": at.deadline_verdict,
        }
        preview = ActionType(pk=at.pk, source_id=at.source_id, name=at.name, **new_deadline)
        taken = items_past_deadline(action_type=preview) if new_deadline != old_deadline else 0
        if taken and request.POST.get("confirm_deadline") != str(taken):
            # A shorter deadline takes the whole backlog older than it at the next run: say how
            # much before saving (the count is confirmed as seen, so a grown backlog asks again).
            context["deadline_preview"] = {"count": taken, **new_deadline}
            return render(request, "actions/edit.html", context)
        try:
            services.action_type_save(actor=request.user, action_type=at, **d)
        except (ServiceError, ValidationError) as exc:
            _form_error(form, exc)
        else:
            messages.success(
                request,
                f"Action {at.name} of {at.source.name} saved."
                + (f" {taken} open items past the deadline are taken at the next run (within a minute)." if taken else ""),
            )
            return redirect("actions:overview")
    elif request.method == "GET":
        context["past_deadline_now"] = items_past_deadline(action_type=at)
    return render(request, "actions/edit.html", context)


@admin_required
def executors(request):
    form = ExecutorForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            ex = services.executor_save(actor=request.user, **form.cleaned_data)
        except (ServiceError, ValidationError) as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Executor {ex.name} added.")
            return redirect("actions:executors")
    return render(
        request,
        "actions/executors.html",
        {
            "executors": Executor.objects.order_by("name"),
            "subscriptions": Subscription.objects.select_related("source").order_by("name"),
            "form": form,
        },
    )


@admin_required
def executor_edit(request, pk: int):
    ex = get_object_or_404(Executor, pk=pk)
    form = ExecutorForm(request.POST or None, instance=ex)
    if request.method == "POST" and form.is_valid():
        try:
            services.executor_save(actor=request.user, executor=ex, **form.cleaned_data)
        except (ServiceError, ValidationError) as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Executor {ex.name} saved.")
            return redirect("actions:executors")
    return render(
        request, "actions/edit.html", {"form": form, "title": f"Executor {ex.name}", "object": ex, "secret_hint": ex.secret_hint}
    )


@admin_required
def subscription_edit(request, pk: int | None = None):
    sub = get_object_or_404(Subscription, pk=pk) if pk else None
    form = SubscriptionForm(request.POST or None, instance=sub)
    if request.method == "POST" and form.is_valid():
        try:
            saved = services.subscription_save(actor=request.user, subscription=sub, **form.cleaned_data)
        except (ServiceError, ValidationError) as exc:
            _form_error(form, exc)
        else:
            messages.success(request, f"Subscription {saved.name} saved.")
            return redirect("actions:executors")
    title = f"Subscription {sub.name}" if sub else "New subscription"
    return render(
        request, "actions/edit.html", {"form": form, "title": title, "object": sub, "secret_hint": sub.secret_hint if sub else ""}
    )


@admin_required
def deliveries(request):
    state = request.GET.get("state", "")
    state = state if state in DeliveryState.values else ""
    kind = request.GET.get("kind", "")
    kind = kind if kind in DeliveryKind.values else ""
    rows = list(selectors.deliveries(state=state, kind=kind)[:200])
    counts = dict(Delivery.objects.values_list("state").annotate(n=Count("id")).order_by())
    return render(
        request,
        "actions/deliveries.html",
        {
            "rows": rows,
            "state": state,
            "kind": kind,
            "states": DeliveryState.values,
            "kinds": DeliveryKind.choices,
            "counts": counts,
        },
    )


@admin_required
@require_POST
def delivery_retry(request, pk: int):
    row = get_object_or_404(Delivery, pk=pk)
    try:
        row = services.delivery_retry(delivery=row, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Delivery {row.pk} ({row.idempotency_key}) is queued again.")
    if request.htmx:
        row = selectors.deliveries().get(pk=pk)
        return render(request, "actions/partials/_delivery_row.html", {"d": row})
    return redirect(request.POST.get("back") if request.POST.get("back", "").startswith("/actions/") else "actions:deliveries")


@reviewer_required
def lists(request):
    source = Source.objects.filter(name=request.GET.get("source", "")).first()
    kind = request.GET.get("kind", "")
    kind = kind if kind in ListKind.values else ""
    show_all = request.GET.get("all") == "1"
    form = None
    if roles.is_admin(request.user):
        form = ListEntryForm(request.POST or None, initial={"source": source.name if source else None, "kind": kind or "allow"})
        if request.method == "POST" and form.is_valid():
            d = form.cleaned_data
            try:
                entry = services.list_entry_add(
                    source=d["source"],
                    kind=d["kind"],
                    entity=d["entity"],
                    action=d["action"],
                    reason=d["reason"],
                    expires_at=form.expires_at(),
                    actor=request.user,
                )
            except ServiceError as exc:
                _form_error(form, exc)
            else:
                if entry.updated:
                    messages.success(
                        request,
                        f"{entry.entity} was already on the {entry.get_kind_display()} of {entry.source.name}: "
                        "its entry is updated (expiry, action and reason).",
                    )
                else:
                    messages.success(request, f"{entry.entity} is on the {entry.get_kind_display()} of {entry.source.name}.")
                return redirect("actions:lists")
    elif request.method == "POST":
        return render(request, "403.html", status=403)
    entries = scoped_to_reviewer(
        selectors.list_entries(source=source, kind=kind, include_inactive=show_all), viewer=request.user
    )[:500]
    return render(
        request,
        "actions/lists.html",
        {
            "entries": entries,
            "form": form,
            "sources": sources_reviewable(user=request.user).order_by("name"),
            "source": source,
            "kind": kind,
            "show_all": show_all,
        },
    )


@admin_required
@require_POST
def list_entry_remove(request, pk: int):
    entry = get_object_or_404(ListEntry, pk=pk)
    try:
        services.list_entry_remove(entry=entry, actor=request.user)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{entry.entity} removed from the {entry.get_kind_display()} of {entry.source.name}.")
    return redirect("actions:lists")
