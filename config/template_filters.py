"""Filters every template may use (``TEMPLATES``' builtins): how a page words what it shows."""

from django import template

from config import celery

register = template.Library()


@register.filter
def error_line(error: str, label: str) -> str:
    """A form error as its line says it: after its field's label ("Batch size: Ensure this
    value ..."), or as it is when it opens with that label already ("Batch size must be between
    1 and 4096.", a service's refusal worded as every door words it)."""
    error, label = str(error), str(label)
    if error.startswith((f"{label} ", f"{label}:")):
        return error
    return f"{label}: {error}"


@register.filter(is_safe=True)
def unreachable_note(what: str) -> str:
    """What a page says of queued work ``what`` ("Run 3", as the page names it) whose job's
    message the broker has not taken yet: ``{% filter unreachable_note %}Run {{ run.pk }}{%
    endfilter %}``."""
    return celery.unreachable_note(str(what))
