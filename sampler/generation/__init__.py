"""Generation: jobs (models, services, views) and the backends that sample completions."""
