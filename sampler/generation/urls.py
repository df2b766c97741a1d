from django.urls import path

from config import converters  # noqa: F401  (registers <id:...>, canonical row ids)
from sampler.generation import views

urlpatterns = [
    path("generate/", views.generate, name="generate"),
    path("generate/recent-jobs/", views.generate_recent_jobs, name="generate-recent-jobs"),
    path("generation/jobs/<id:job_id>/", views.job_detail, name="job-detail"),
]
