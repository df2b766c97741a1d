"""The sampler app's pages, defined per feature, under one namespace (``sampler:``)."""

from sampler.comparisons.urls import urlpatterns as comparison_urls
from sampler.generation.urls import urlpatterns as generation_urls
from sampler.registry.urls import urlpatterns as registry_urls
from sampler.runs.urls import urlpatterns as runs_urls

app_name = "sampler"

urlpatterns = [*generation_urls, *runs_urls, *registry_urls, *comparison_urls]
