"""The ranking app's admin pages, defined per feature; imported here so the admin finds them."""

from ranking.exports import admin as exports_admin
from ranking.gold import admin as gold_admin
from ranking.projects import admin as projects_admin
from ranking.quality import admin as quality_admin
from ranking.rank import admin as rank_admin

__all__ = ["exports_admin", "gold_admin", "projects_admin", "quality_admin", "rank_admin"]
