"""The ranking app's JSON API, defined per feature."""

from ranking.exports.api_urls import urlpatterns as exports_urls
from ranking.projects.api_urls import urlpatterns as projects_urls
from ranking.rank.api_urls import urlpatterns as rank_urls

urlpatterns = [*exports_urls, *rank_urls, *projects_urls]
