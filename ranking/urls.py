"""The ranking app's pages, defined per feature, under one namespace (``ranking:``)."""

from ranking.exports.urls import urlpatterns as exports_urls
from ranking.projects.urls import urlpatterns as projects_urls
from ranking.quality.urls import urlpatterns as quality_urls
from ranking.rank.urls import urlpatterns as rank_urls

app_name = "ranking"

urlpatterns = [*rank_urls, *exports_urls, *quality_urls, *projects_urls]
