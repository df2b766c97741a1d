"""The bounds of a project's K, overlap and pool size. Django-free: the settings bound the
site's defaults (RANKING_ALTERNATIVES, RANKING_OVERLAP, RANKING_POOL_SIZE) with them too."""

MAX_ALTERNATIVES = 16
MAX_OVERLAP = 50
MAX_POOL_SIZE = 1000
