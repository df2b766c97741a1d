from django.urls import path

from sampler.generation import views

urlpatterns = [
    path("generate/", views.generate, name="generate"),
    path("generation/jobs/<int:job_id>/", views.job_detail, name="job-detail"),
]
