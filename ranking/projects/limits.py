"""The bounds of a project's numeric settings. Django-free: the settings bound the site's
defaults (RANKING_ALTERNATIVES, RANKING_OVERLAP, RANKING_POOL_SIZE) with them too."""

MAX_ALTERNATIVES = 16
MAX_OVERLAP = 50
MAX_POOL_SIZE = 1000
MAX_TARGET_RANKINGS = 10**9
MAX_QUALIFICATION_TASKS = 100
MAX_CANDIDATE_FACTOR = 20
