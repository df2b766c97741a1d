"""``{{ filters|filter_list }}``: a stored filter set (an export's, a training run's data) as a
list of "Label: value" items, escaped, for the Exports and Training run pages;
``{{ config|setting_list }}``: a stored configuration (a training run's) as "Label: value" items
in the same list, escaped."""

from collections.abc import Iterable

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ranking.exports.filters import filter_items, value_text
from sampler.training.config import number_text, setting_label

register = template.Library()


def _item_list(items: Iterable[tuple[str, str]]) -> SafeString:
    return format_html(
        '<ul class="filter-items">{}</ul>', format_html_join("", "<li>{}: {}</li>", items)
    )


@register.filter
def filter_list(values: dict | None) -> SafeString:
    return _item_list(filter_items(values or {}))


@register.filter
def setting_list(values: dict | None) -> SafeString:
    """Each setting by its label, as the Training page and the train_* commands name it
    (``setting_label``; a key with no label by its own name), in the stored order, its value as
    stored (``value_text``), a float as the refusals write it (``number_text``: "0.00002",
    not "2e-05")."""
    return _item_list(
        (
            setting_label(str(key)),
            number_text(value) if isinstance(value, float) else value_text(value),
        )
        for key, value in (values or {}).items()
    )
