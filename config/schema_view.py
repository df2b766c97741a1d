"""``/api/schema/``'s view, apart from ``config.api_schema``: drf-spectacular's views read DRF's
settings on import, and those name ``config.api_schema``'s schema class."""

from drf_spectacular.views import SpectacularAPIView
from rest_framework.renderers import JSONRenderer

from config.api import query_names_checked


class SchemaView(SpectacularAPIView):
    """JSON, or YAML when the Accept header asks for it. Like every endpoint under ``/api/`` it
    refuses a query parameter by name (it takes none: ``?format=yaml`` and drf-spectacular's
    ``?lang=`` were answered the JSON schema without a word), and its errors are JSON
    (``{"detail": ...}``), whichever schema format was asked for."""

    def initial(self, request, *args, **kwargs) -> None:
        super().initial(request, *args, **kwargs)
        if request.method in ("GET", "HEAD"):
            query_names_checked(request.query_params, ())

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response
