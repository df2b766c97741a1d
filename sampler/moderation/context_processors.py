from django.http import HttpRequest

from sampler.moderation.filters import content_filter_configured


def content_filter(request: HttpRequest) -> dict[str, bool]:
    """``content_filter_on``: whether a filter is configured (the settings alone), so a page
    says a sample waiting for it is "not judged yet" only while something will judge it."""
    return {"content_filter_on": content_filter_configured()}
