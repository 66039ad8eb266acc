"""Small template helpers for the console."""

from django import template

register = template.Library()


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template; None when missing."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(key)
