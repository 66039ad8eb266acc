"""Console pages of the models registry (admins only): versions, retraining, promotion and rollback,
validation reports with plots, learning settings, monitoring, threshold tuning and data export."""

from __future__ import annotations

import tempfile

from django.contrib import messages
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from models_registry import export, ml, monitoring, plots, selectors, tuning
from models_registry import services as model_services
from models_registry.forms import LearningSettingsForm, TuningForm
from models_registry.models import LearningSettings, ModelVersion
from models_registry.tasks import training_request
from reviews import services
from reviews.audit import audit_record
from reviews.forms import PolicyForm, ReasonForm
from reviews.models import Source
from reviews.views import admin_required


def _png(data: bytes) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["Cache-Control"] = "private, max-age=300"
    return response


@admin_required
def models_page(request):
    sources = list(Source.objects.order_by("name").select_related("policy"))
    learning = {ls.source_id: ls for ls in LearningSettings.objects.all()}
    rows = [{"source": s, "learning": learning.get(s.id)} for s in sources]
    return render(
        request,
        "models_registry/models.html",
        {
            "versions": selectors.model_versions_list(),
            "sources": rows,
            "form": ReasonForm(),
            "monitoring_alerts": selectors.monitoring_alerts_current(),
        },
    )


@admin_required
@require_POST
def model_retrain(request, name: str):
    source = get_object_or_404(Source, name=name)
    try:
        model = training_request(source=source, triggered_by=request.user.get_username(), actor=request.user)
        messages.success(request, f"Training of {source.name} v{model.version} started.")
    except services.ItemConflict as exc:
        messages.error(request, exc.message)
    return redirect("registry:models")


@admin_required
@require_POST
def model_action(request, pk: int, verb: str):
    if verb not in ("promote", "rollback"):
        raise Http404("unknown model action")
    model = get_object_or_404(ModelVersion, pk=pk)
    form = ReasonForm(request.POST)
    back = request.POST.get("next") == "report"
    target = reverse("registry:report", args=[pk]) if back else reverse("registry:models")
    if not form.is_valid():
        messages.error(request, "Give a reason.")
        return redirect(target)
    if verb == "promote" and model.gate_rejected and request.POST.get("over_gate") != "yes":
        # The gate said no: say why and ask once more before overriding it.
        return render(
            request,
            "models_registry/promote_confirm.html",
            {"model": model, "gate": model.validation_report, "reason": form.cleaned_data["reason"], "back": back},
        )
    try:
        if verb == "promote":
            model_services.model_promote(model=model, actor=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"{model.source.name} v{model.version} is now the champion.")
        else:
            restored = model_services.model_rollback(model=model, actor=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"Rolled back to {restored.source.name} v{restored.version}.")
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(target)


# ---------------------------------------------------------------- validation report


@admin_required
def model_report(request, pk: int):
    model = get_object_or_404(ModelVersion.objects.select_related("source"), pk=pk)
    report = model.validation_report or {}
    manifest = model.training_manifest or {}
    # The champion the gate compared with, as it was at training time (it may be retired since).
    champion_then = report.get("champion_version") if report.get("champion") else None
    metric_rows = []
    for key, label in (
        ("pr_auc", "PR AUC"),
        ("roc_auc", "ROC AUC"),
        ("precision_at_threshold", "precision at the review threshold"),
        ("recall_at_threshold", "recall at the review threshold"),
        ("fpr_at_threshold", "false-positive rate at the review threshold"),
        ("accuracy_at_threshold", "accuracy at the review threshold"),
    ):
        metric_rows.append(
            {
                "label": label,
                "candidate": (report.get("candidate") or {}).get(key),
                "champion": (report.get("champion") or {}).get(key),
            }
        )
    return render(
        request,
        "models_registry/report.html",
        {
            "model": model,
            # Refused, failed and running trainings have no report (and so no report reason).
            "summary": report.get("reason") or model.status_reason or model.error,
            "status_reason": model.status_reason if model.status_reason != report.get("reason") else "",
            "over_gate": model.promotion_over_gate,
            "report": report,
            "manifest": manifest,
            "split_train": (manifest.get("split") or {}).get("train"),
            "holdout": manifest.get("holdout"),
            "champion_then": champion_then,
            "metric_rows": metric_rows,
            "has_curves": bool(report.get("curves")),
            "plot_kinds": [
                ("pr", "Precision-recall"),
                ("roc", "ROC"),
                ("calibration", "Calibration"),
                ("scores", "Score histograms"),
                ("confusion", "Confusion matrices at each threshold"),
            ],
            "form": ReasonForm(),
        },
    )


@admin_required
def model_report_plot(request, pk: int, kind: str):
    draw = plots.REPORT_PLOTS.get(kind)
    if draw is None:
        raise Http404("unknown plot")
    model = get_object_or_404(ModelVersion.objects.only("id", "version", "validation_report"), pk=pk)
    return _png(draw(model.validation_report or {}, model.version))


# ---------------------------------------------------------------- learning settings


@admin_required
def learning_settings_page(request, name: str):
    source = get_object_or_404(Source.objects.select_related("policy"), name=name)
    learning = selectors.learning_settings_get(source=source)
    if request.method == "POST":
        form = LearningSettingsForm(request.POST, instance=LearningSettings(source=source))
        if form.is_valid():
            changes = {f: form.cleaned_data[f] for f in model_services.LEARNING_FIELDS}
            try:
                model_services.learning_settings_update(
                    source=source, actor=request.user, audit_sample_rate=form.cleaned_data["audit_sample_rate"], **changes
                )
            except services.ServiceError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Learning settings of {source.name} saved.")
                return redirect("registry:settings", name=name)
    else:
        form = LearningSettingsForm(instance=learning, initial={"audit_sample_rate": source.policy.audit_sample_rate})
    return render(
        request,
        "models_registry/settings.html",
        {"source": source, "learning": learning, "form": form, "saved": learning.pk is not None},
    )


# ---------------------------------------------------------------- monitoring


@admin_required
def monitoring_overview(request):
    rows = []
    for source in Source.objects.order_by("name"):
        rows.append(
            {
                "source": source,
                "latest": selectors.monitoring_latest(source=source),
                "learning": selectors.learning_settings_get(source=source),
            }
        )
    return render(
        request,
        "models_registry/monitoring_overview.html",
        {"rows": rows, "monitoring_alerts": selectors.monitoring_alerts_current()},
    )


@admin_required
def monitoring_page(request, name: str):
    source = get_object_or_404(Source, name=name)
    history = selectors.monitoring_history(source=source, limit=30)
    latest = history[0] if history else None
    learning = selectors.learning_settings_get(source=source)
    attribute_rows = sorted((latest.attribute_psi or {}).items(), key=lambda kv: kv[1], reverse=True) if latest else []
    return render(
        request,
        "models_registry/monitoring.html",
        {
            "source": source,
            "latest": latest,
            "history": history,
            "learning": learning,
            "attribute_rows": attribute_rows[:25],
            "champion": selectors.champion_of(source=source),
            "monitoring_alerts": selectors.monitoring_alerts_current(),
        },
    )


@admin_required
@require_POST
def monitoring_run(request, name: str):
    source = get_object_or_404(Source, name=name)
    snapshot = monitoring.monitoring_snapshot_create(source=source)
    if snapshot.alerts:
        messages.error(request, f"{len(snapshot.alerts)} alert(s) for {source.name}.")
    else:
        messages.success(request, f"Monitoring of {source.name} computed: no alerts.")
    return redirect("registry:monitoring", name=name)


@admin_required
def monitoring_plot(request, name: str, kind: str):
    source = get_object_or_404(Source, name=name)
    learning = selectors.learning_settings_get(source=source)
    if kind == "psi":
        history = selectors.monitoring_history(source=source, limit=60)
        return _png(plots.monitoring_psi_history(history, learning.score_psi_limit, learning.attribute_psi_limit))
    latest = selectors.monitoring_latest(source=source)
    if kind == "overturns":
        return _png(plots.monitoring_overturns(latest.overturn_by_day if latest else [], learning.overturn_rate_limit))
    if kind == "attributes":
        return _png(plots.monitoring_attributes(latest.attribute_psi if latest else {}, learning.attribute_psi_limit))
    if kind == "scores":
        return _png(plots.monitoring_scores(latest.score_bins if latest else {}))
    raise Http404("unknown plot")


# ---------------------------------------------------------------- threshold tuning


def _custom_thresholds(preview: PolicyForm | None) -> tuple[float, dict[str, float]] | None:
    """Thresholds the admin typed into the preview form, if any and valid."""
    if preview is None or not preview.is_valid():
        return None
    return preview.cleaned_data["review_threshold"], {t["action"]: t["min_score"] for t in preview.thresholds()}


@admin_required
def tuning_page(request, name: str):
    source = get_object_or_404(Source.objects.select_related("policy"), name=name)
    policy = source.policy
    if request.method == "POST":
        form = TuningForm(request.POST)
        apply_form = PolicyForm(request.POST, source=source)
        if form.is_valid() and apply_form.is_valid():
            model_services.thresholds_apply(
                source=source,
                actor=request.user,
                review_threshold=apply_form.cleaned_data["review_threshold"],
                thresholds=apply_form.thresholds(),
                basis=form.basis(),
                four_eyes_actions=apply_form.cleaned_data["four_eyes_actions"] if "four_eyes_given" in request.POST else None,
            )
            messages.success(request, f"New thresholds of {source.name} applied. New scores use them.")
            return redirect("registry:tuning", name=name)
        messages.error(
            request, "The thresholds were not applied: " + " ".join(e for errs in apply_form.errors.values() for e in errs)
        )
        return redirect("registry:tuning", name=name)
    context: dict = {"source": source, "policy": policy, "current_thresholds": tuning.policy_current(policy)}
    form = TuningForm(
        request.GET if "goal" in request.GET else None, initial={"days": 30, "goal": "cost", "cost_missed": 100, "cost_review": 1}
    )
    context["form"] = form
    # Thresholds typed into the preview form: invalid ones are shown back with the reasons, not
    # silently replaced by the recommendation.
    preview = PolicyForm(request.GET, source=source) if "review_threshold" in request.GET else None
    refused = preview is not None and not preview.is_valid()
    context["preview_errors"] = [e for errs in preview.errors.values() for e in errs] if refused else []
    if form.is_bound and form.is_valid():
        try:
            result = tuning.tuning_run(
                source=source,
                days=form.cleaned_data["days"],
                goal=form.cleaned_data["goal"],
                costs=form.costs(),
                targets=form.targets(),
                custom=_custom_thresholds(preview),
            )
        except services.ServiceError as exc:
            context["error"] = exc.message
        else:
            data, rec = result["data"], result["recommended"]
            counts = tuning.expected_counts(data.scores, data.p)
            chosen = {"review": rec["review_threshold"], **rec["thresholds"]}
            # The second-opinion actions: the policy's, or those ticked in the preview form.
            previewed = "custom" in result
            four_eyes = request.GET.getlist("four_eyes_actions") if previewed else list(policy.four_eyes_actions or [])
            initial = {"review_threshold": rec["review_threshold"], **rec["thresholds"], "four_eyes_actions": four_eyes}
            context.update(
                result=result,
                data=data,
                columns=[("current", "current policy", result["current"]), ("proposed", "recommended", result["proposed"])]
                + ([("custom", "your thresholds", result["custom"])] if "custom" in result else []),
                apply_form=preview if refused else PolicyForm(initial=initial, source=source),
                hidden_inputs=[(k, v) for k, v in form.cleaned_data.items() if v is not None],
                four_eyes=four_eyes,
                plot_curves=plots.data_uri(plots.tuning_curves(ml.curves(data.labelled_y, data.labelled_scores, {}))),
                plot_tradeoff=plots.data_uri(
                    plots.tuning_tradeoff(tuning.GRID, counts, data.per_day, policy.review_threshold, rec["review_threshold"])
                ),
                plot_costs=plots.data_uri(plots.tuning_costs(tuning.GRID, rec["curves"], data.per_day, chosen))
                if form.cleaned_data["goal"] == "cost"
                else None,
            )
    return render(request, "models_registry/tuning.html", context)


# ---------------------------------------------------------------- export


def export_response(*, source: Source, fmt: str, actor) -> HttpResponse:
    """The labelled data of a source as a download; shared by the console and the API."""
    if fmt not in ("csv", "parquet"):
        raise Http404("unknown export format")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    filename = f"{source.name}-labelled-{stamp}.{fmt}"
    # Data leaves the system: who took what is on the audit trail.
    audit_record(actor=actor, verb="labels.export", obj=source, after={"format": fmt, "filename": filename})
    if fmt == "csv":
        response = StreamingHttpResponse(export.csv_lines(source), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    fh = tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024)
    export.parquet_write(source, fh)
    fh.seek(0)
    return FileResponse(fh, as_attachment=True, filename=filename, content_type="application/vnd.apache.parquet")


@admin_required
def export_labels(request, name: str, fmt: str):
    source = get_object_or_404(Source, name=name)
    return export_response(source=source, fmt=fmt, actor=request.user)
