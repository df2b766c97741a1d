"""The sampler app's JSON API, defined per feature."""

from sampler.generation.api_urls import urlpatterns as generation_urls
from sampler.jobs.api_urls import urlpatterns as jobs_urls
from sampler.registry.api_urls import urlpatterns as registry_urls

urlpatterns = [*generation_urls, *registry_urls, *jobs_urls]
