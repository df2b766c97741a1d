from django import template
from django.utils.safestring import SafeString, mark_safe

from labeling.conversations.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str) -> SafeString:
    # Safe because render_markdown sanitises with an allow-list (nh3) after rendering.
    return mark_safe(render_markdown(text or ""))
