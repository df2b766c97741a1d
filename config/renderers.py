"""The API's JSON renderer (settings name it: ``REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"]``);
a module of its own, as DRF's views import it while they load."""

from rest_framework import renderers


class JSONRenderer(renderers.JSONRenderer):
    """DRF's, except that text it cannot encode as UTF-8 (an unpaired surrogate a caller sent,
    repeated in an error message) is written as JSON escapes rather than failing (a 500)."""

    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            self.ensure_ascii = True  # this request's renderer only: \ud800 is valid JSON
            return super().render(data, accepted_media_type, renderer_context)
