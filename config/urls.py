from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)

from config import api, home
from config.schema_view import SchemaView

# Under /api/ these answer JSON (config.api); elsewhere Django's own pages.
handler400 = api.handler400
handler403 = api.handler403
handler404 = api.handler404
handler500 = api.handler500

urlpatterns = [
    path("", home.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),
    path("admin/", admin.site.urls),
    path("write/", include("labeling.urls")),
    path("", include("ranking.urls")),
    path("", include("sampler.urls")),
    path("api/", include("labeling.api_urls")),
    path("api/", include("ranking.api_urls")),
    path("api/", include("sampler.api_urls")),
    # JSON like every answer under /api/; YAML when asked for (Accept: application/vnd.oai.openapi).
    path(
        "api/schema/",
        SchemaView.as_view(
            renderer_classes=[
                OpenApiJsonRenderer,
                OpenApiJsonRenderer2,
                OpenApiYamlRenderer,
                OpenApiYamlRenderer2,
            ]
        ),
        name="api-schema",
    ),
]
