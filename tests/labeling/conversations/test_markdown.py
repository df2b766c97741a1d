import pytest

from labeling.conversations.markdown import render_markdown


def test_a_script_tag_is_shown_as_text_not_run_or_dropped():
    html = render_markdown('hi <script>alert("x")</script> there')

    assert "<script" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;/script&gt;" in html


def test_block_html_with_handlers_is_escaped_whole():
    html = render_markdown('<div onclick="steal()">click</div>\n\n<img src=x onerror=alert(1)>')

    assert "<div" not in html and "<img" not in html
    assert "&lt;div onclick=" in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_markdown_formatting_code_and_lists_still_render():
    html = render_markdown("**bold** and `<i>`\n\n- one\n- two\n\n```\n<p>code</p>\n```")

    assert "<strong>bold</strong>" in html
    assert "<code>&lt;i&gt;</code>" in html
    assert "<ul>" in html and "<li>one</li>" in html
    assert "<pre><code>&lt;p&gt;code&lt;/p&gt;" in html


def test_links_keep_only_safe_schemes_and_get_nofollow():
    html = render_markdown("[ok](https://example.org) [bad](javascript:alert(1))")

    assert 'href="https://example.org"' in html and "nofollow" in html
    assert "javascript:" not in html


def test_a_link_to_an_unsafe_address_is_plain_text_not_a_link():
    html = render_markdown(
        '[click](javascript:alert(1)) [**bold** `code`](data:text/html,x "a title") [ok](https://e.org)'
    )

    assert html.count("<a ") == 1 and 'href="https://e.org"' in html
    assert "<p>click <strong>bold</strong> <code>code</code> <a " in html


def test_calls_do_not_share_state():
    render_markdown("[a]: https://example.org\n\n[a]")

    assert "example.org" not in render_markdown("[a]")


def test_a_markdown_image_is_shown_as_written_never_loaded_nor_dropped():
    """A reply that tries to show an image is something to judge (or flag): its alt text and
    address stay on the page as text, and nothing is fetched."""
    html = render_markdown("see ![a cat](https://x.example/cat.png) here")

    assert "<img" not in html
    assert "![a cat](https://x.example/cat.png)" in html


@pytest.mark.parametrize(
    "address",
    [
        "/accounts/logout/",
        "../admin/",
        "settings/",
        "?status=draft",
        "#top",
        "//elsewhere.example/x",
        "https:/accounts/logout/",
        "https:accounts/",
    ],
)
def test_a_link_into_this_site_or_without_a_host_of_its_own_is_plain_text(address):
    """A reply's link to this site (``/accounts/logout/``, ``../admin/``) would put an action
    of the app under a trainer's click; only absolute http(s) and mailto: addresses are links."""
    html = render_markdown(f"[click here]({address}) or [mail](mailto:a@example.org)")

    assert html.count("<a ") == 1 and 'href="mailto:a@example.org"' in html
    assert "<p>click here or <a " in html
