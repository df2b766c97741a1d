"""Filters every template may use (``TEMPLATES``' builtins): how a page words what it shows."""

from django import template

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
