from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.jobs import apis

urlpatterns = [
    path("jobs/queues/", apis.QueueDepthsApi.as_view(), name="api-job-queues"),
    path("jobs/<str:kind>/<id:job_id>/", apis.JobDetailApi.as_view(), name="api-job-detail"),
    path("jobs/<str:kind>/<id:job_id>/retry/", apis.JobRetryApi.as_view(), name="api-job-retry"),
    path("jobs/<str:kind>/<id:job_id>/cancel/", apis.JobCancelApi.as_view(), name="api-job-cancel"),
]
