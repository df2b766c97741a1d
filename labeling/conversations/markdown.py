"""Markdown for chat turns. Model and trainer text is untrusted: render, then sanitise."""

import re
import threading

import markdown as markdown_lib
import nh3

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "th": {"align"}, "td": {"align"}}

# A link as the sanitiser writes it: attributes double-quoted (a quote inside one is "&quot;"),
# links never nested.
_LINK = re.compile(r"<a((?:\s[\w-]+=\"[^\"]*\")*)>(.*?)</a>", re.DOTALL)
# The addresses that stay links: http(s) with a host of their own, and mailto:. A relative
# one (``/accounts/logout/``, ``../admin/``, ``#top``) would lead into this site, where a link
# in a reply could put one of its actions under a trainer's click; so would ``https:/path``,
# which a browser reads against the page's own address; ``//host`` is left out with them.
_KEPT_HREF = re.compile(r"\shref=\"(?:https?://[^/\\\"\s]|mailto:)", re.IGNORECASE)

_local = threading.local()


def _converter() -> markdown_lib.Markdown:
    """This thread's converter (building one costs as much as a render), reset for each text:
    a ``Markdown`` instance keeps state such as reference links between calls."""
    converter = getattr(_local, "converter", None)
    if converter is None:
        converter = markdown_lib.Markdown(
            extensions=["fenced_code", "tables", "sane_lists", "nl2br"], output_format="html"
        )
        # Raw HTML in a turn is text the writer or the model typed: show it as written
        # (escaped), as a chat does, instead of passing it through for the sanitiser to drop.
        converter.preprocessors.deregister("html_block")
        converter.inlinePatterns.deregister("html")
        # An image is never loaded (nothing outside the app is fetched, and the sanitiser
        # drops <img>): "![alt](url)" shows as "!" and a link to it, so the reader sees that
        # the text holds an image, what it says it is and where it points.
        for name in ("image_link", "image_reference", "short_image_ref"):
            converter.inlinePatterns.deregister(name, strict=False)
        _local.converter = converter
    return converter.reset()


def render_markdown(text: str) -> str:
    """Markdown to HTML that cannot run script, load resources or break out of its element."""
    html = _converter().convert(text)
    # Second line of defence: an allow-list, whatever the Markdown extensions emit.
    html = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        url_relative="deny",
        link_rel="nofollow noopener noreferrer",
    )
    # A link whose address the sanitiser dropped (javascript:, data:, a relative one) or that
    # has no host of its own is shown as its text, not as something that looks clickable.
    return _LINK.sub(lambda link: link[0] if _KEPT_HREF.search(link[1]) else link[2], html)
