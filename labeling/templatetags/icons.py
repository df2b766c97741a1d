"""``{% icon "name" %}``: an SVG icon of the Lucide set (npm ``lucide-static``, served from
node_modules as static files: see STATICFILES_DIRS). Decorative: the text beside it, or the
control's label, says what it means."""

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def icon(name: str, size: int = 16) -> str:
    return format_html(
        '<img class="icon" src="{}" alt="" aria-hidden="true" width="{}" height="{}">',
        static(f"vendor/lucide/{name}.svg"),
        size,
        size,
    )
