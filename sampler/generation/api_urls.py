from django.urls import path

from sampler.generation import apis

urlpatterns = [
    path(
        "generation-jobs/", apis.GenerationJobCreateApi.as_view(), name="api-generation-job-create"
    ),
    path(
        "generation-jobs/<int:job_id>/",
        apis.GenerationJobDetailApi.as_view(),
        name="api-generation-job-detail",
    ),
    path(
        "generation-jobs/<int:job_id>/cancel/",
        apis.GenerationJobCancelApi.as_view(),
        name="api-generation-job-cancel",
    ),
    path(
        "generation-jobs/<int:job_id>/retry/",
        apis.GenerationJobRetryApi.as_view(),
        name="api-generation-job-retry",
    ),
]
