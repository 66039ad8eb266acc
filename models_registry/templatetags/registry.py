"""{% load registry %}{% monitoring_alerts %}: the current model alerts, for any page that wants them.
Renders nothing for users who are not admins (the alerts link to admin-only pages)."""

from django import template

from models_registry.selectors import monitoring_alerts_current
from reviews import roles

register = template.Library()


@register.inclusion_tag("models_registry/_alerts.html", takes_context=True)
def monitoring_alerts(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not roles.is_admin(user):
        return {"monitoring_alerts": []}
    return {"monitoring_alerts": monitoring_alerts_current()}
