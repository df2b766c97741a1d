from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.registry import apis

urlpatterns = [
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-model-version-list"),
    path(
        "model-versions/<id:version_id>/",
        apis.ModelVersionDetailApi.as_view(),
        name="api-model-version-detail",
    ),
]
