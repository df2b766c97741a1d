from django.urls import path

from sampler import apis

urlpatterns = [
    path(
        "generation-jobs/", apis.GenerationJobCreateApi.as_view(), name="api-generation-job-create"
    ),
    path(
        "generation-jobs/<int:job_id>/",
        apis.GenerationJobDetailApi.as_view(),
        name="api-generation-job-detail",
    ),
    path("model-versions/", apis.ModelVersionListApi.as_view(), name="api-model-version-list"),
]
