"""Console pages of the models registry: versions, retraining, promotion and rollback."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from models_registry import services as model_services
from models_registry.models import ModelVersion
from models_registry.tasks import train_model
from reviews import services
from reviews.forms import ReasonForm
from reviews.models import Source
from reviews.views import admin_required


@admin_required
def models_page(request):
    versions = ModelVersion.objects.select_related("source").order_by("source__name", "-version")[:200]
    return render(
        request, "models_registry/models.html", {"versions": versions, "sources": Source.objects.order_by("name"), "form": ReasonForm()}
    )


@admin_required
@require_POST
def model_retrain(request, name: str):
    source = get_object_or_404(Source, name=name)
    try:
        with transaction.atomic():
            model = model_services.training_start(source=source, triggered_by=request.user.get_username(), actor=request.user)
            transaction.on_commit(lambda: train_model.delay(model.pk))
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
    if not form.is_valid():
        messages.error(request, "Give a reason.")
        return redirect("registry:models")
    try:
        if verb == "promote":
            model_services.model_promote(model=model, actor=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"{model.source.name} v{model.version} is now the champion.")
        else:
            restored = model_services.model_rollback(model=model, actor=request.user, reason=form.cleaned_data["reason"])
            messages.success(request, f"Rolled back to {restored.source.name} v{restored.version}.")
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("registry:models")
