"""Small template helpers for the console."""

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


@register.filter
def get_item(mapping, key):
    """mapping[key] in a template; None when missing."""
    if not isinstance(mapping, dict):
        return None
    return mapping.get(key)


@register.filter(is_safe=True)
def reveal(value) -> SafeString:
    """Event data, escaped, with every invisible or layout-changing character shown as its code
    point. Event data is attacker-controlled: a right-to-left override makes "gnp.exe" read as
    "exe.png", and zero-width or non-breaking characters make two different entities look the
    same to a reviewer. The span lets a long unbroken value wrap anywhere (see base.html)."""
    text = str(value)
    if text.isprintable():
        return format_html('<span class="v">{}</span>', text)
    out, run = ['<span class="v">'], []
    for ch in text:
        if ch.isprintable() or ch in " \n":
            run.append(ch)
            continue
        out.append(escape("".join(run)))
        run = []
        out.append(format_html('<span class="ctl" title="invisible character U+{0}">U+{0}</span>', f"{ord(ch):04X}"))
    out.append(escape("".join(run)))
    out.append("</span>")
    return mark_safe("".join(out))  # every piece above is escaped


@register.simple_tag(takes_context=True)
def action_label(context, item) -> str:
    """The label of an item's proposed action: the built-in label, or the one an admin gave the
    source's action type (one query per action type and page). Escaped like any tag output."""
    from actions.models import ActionType
    from reviews.choices import Action

    name = item.proposed_action
    if name in Action.values:
        return str(Action(name).label)
    cache = context.render_context.setdefault("action_labels", {})
    key = (item.source_id, name)
    if key not in cache:
        cache[key] = (
            ActionType.objects.filter(source_id=item.source_id, name=name).values_list("label", flat=True).first() or name
        )
    return cache[key]
