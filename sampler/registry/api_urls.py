from django.urls import path

from sampler.registry import apis

urlpatterns = [
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-model-version-list"),
    path(
        "model-versions/<int:version_id>/",
        apis.ModelVersionDetailApi.as_view(),
        name="api-model-version-detail",
    ),
]
