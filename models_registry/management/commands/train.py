"""Train, validate and (if it passes the gate) promote a model for a source, in this process."""

from django.core.management.base import BaseCommand, CommandError

from models_registry import services
from reviews.models import Source


class Command(BaseCommand):
    help = "Train a model for a source now, validate it against the champion and promote it if it passes."

    def add_arguments(self, parser):
        parser.add_argument("--source", required=True)

    def handle(self, *args, **opts):
        source = Source.objects.filter(name=opts["source"]).first()
        if source is None:
            raise CommandError(f"unknown source {opts['source']!r}")
        try:
            model = services.training_start(source=source, triggered_by="manage.py train")
        except services.TrainingConflict as exc:
            raise CommandError(exc.message) from exc
        model = services.model_train(model=model)
        metrics = model.metrics or {}
        summary = ", ".join(
            f"{k} {metrics[k]:.3f}" for k in ("roc_auc", "pr_auc", "accuracy_at_threshold") if metrics.get(k) is not None
        )
        self.stdout.write(f"{source.name} v{model.version}: {model.status} ({model.algorithm}) {summary}")
        self.stdout.write(f"  {model.status_reason or model.error.splitlines()[0] if model.error else model.status_reason}")
        if model.status == "failed":
            raise CommandError(model.error.splitlines()[0])
