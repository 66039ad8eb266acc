"""Enumerations for model versions."""

from django.db import models


class ModelStatus(models.TextChoices):
    TRAINING = "training"
    CANDIDATE = "candidate"
    CHAMPION = "champion"
    RETIRED = "retired"
    REJECTED = "rejected"
    FAILED = "failed"


class Algorithm(models.TextChoices):
    ISOLATION_FOREST = "isolation_forest", "IsolationForest (unsupervised)"
    HIST_GRADIENT_BOOSTING = "hist_gradient_boosting", "HistGradientBoosting (supervised)"
