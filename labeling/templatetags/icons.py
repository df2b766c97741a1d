"""``{% icon "name" %}``: an SVG icon of the Lucide set (npm ``lucide-static``, served from
node_modules as static files: see STATICFILES_DIRS), inlined so that it takes the text's colour.
Decorative: the text beside it, or the control's label, says what it means."""

import re
from functools import lru_cache

from django import template
from django.contrib.staticfiles import finders
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_NAME = re.compile(r"^[a-z0-9-]+$")


@lru_cache(maxsize=128)
def _svg(path: str, css_class: str) -> str:
    found = finders.find(path)
    if not found:
        raise template.TemplateSyntaxError(f"No icon at static/{path}.")
    with open(found, encoding="utf-8") as file:
        text = file.read()
    svg = text[text.index("<svg") :]
    # Lucide's own class attribute makes way for ours; the rest (viewBox, stroke) stays.
    svg = re.sub(r'\sclass="[^"]*"', "", svg, count=1)
    svg = re.sub(r'\swidth="\d+"\s+height="\d+"', "", svg, count=1)
    return svg.replace(
        "<svg", f'<svg class="{css_class}" aria-hidden="true" focusable="false"', 1
    ).strip()


@register.simple_tag
def icon(name: str) -> SafeString:
    if not _NAME.match(name):
        raise template.TemplateSyntaxError(f"Not an icon name: {name!r}.")
    return mark_safe(_svg(f"vendor/lucide/{name}.svg", "icon"))  # a file of the icon set


@register.simple_tag
def brand_mark() -> SafeString:
    return mark_safe(_svg("favicon.svg", "brand-mark"))  # the project's own file
