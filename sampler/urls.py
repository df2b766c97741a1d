from django.urls import path

from sampler import views

app_name = "sampler"

urlpatterns = [
    path("generate/", views.generate, name="generate"),
    path("generation/jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("training/", views.training, name="training"),
    path("models/<int:version_id>/promote/", views.version_promote, name="version-promote"),
]
