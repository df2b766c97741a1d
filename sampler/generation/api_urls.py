from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.generation import apis

urlpatterns = [
    path(
        "generation-jobs/", apis.GenerationJobCreateApi.as_view(), name="api-generation-job-create"
    ),
    path(
        "generation-jobs/<id:job_id>/",
        apis.GenerationJobDetailApi.as_view(),
        name="api-generation-job-detail",
    ),
    path(
        "generation-jobs/<id:job_id>/cancel/",
        apis.GenerationJobCancelApi.as_view(),
        name="api-generation-job-cancel",
    ),
    path(
        "generation-jobs/<id:job_id>/retry/",
        apis.GenerationJobRetryApi.as_view(),
        name="api-generation-job-retry",
    ),
]
