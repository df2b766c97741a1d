"""``{{ filters|filter_list }}``: a stored filter set (an export's, a training run's data) as a
list of "Label: value" items, escaped, for the Exports and Training run pages."""

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ranking.exports.filters import filter_items

register = template.Library()


@register.filter
def filter_list(values: dict | None) -> SafeString:
    items = format_html_join("", "<li>{}: {}</li>", filter_items(values or {}))
    return format_html('<ul class="filter-items">{}</ul>', items)
