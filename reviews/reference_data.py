"""Rows every installation needs: the role groups and the starting reason codes. Idempotent."""

from reviews.choices import DEFAULT_REASONS
from reviews.roles import ROLE_GROUPS


def reference_data_ensure(group_model=None, reason_model=None) -> None:
    """Create missing groups and reason codes; models can be passed in by a data migration."""
    if group_model is None:
        from django.contrib.auth.models import Group as group_model  # noqa: N813
    if reason_model is None:
        from reviews.models import ReasonCode as reason_model  # noqa: N813
    for name in ROLE_GROUPS:
        group_model.objects.get_or_create(name=name)
    for order, (code, label, applies_to) in enumerate(DEFAULT_REASONS):
        reason_model.objects.get_or_create(code=code, defaults={"label": label, "applies_to": applies_to, "order": order * 10})
