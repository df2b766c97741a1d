"""The sampler app's admin pages, defined per feature; imported here so the admin finds them."""

from sampler.comparisons import admin as comparisons_admin
from sampler.generation import admin as generation_admin
from sampler.moderation import admin as moderation_admin
from sampler.registry import admin as registry_admin
from sampler.runs import admin as runs_admin
from sampler.workers import admin as workers_admin

__all__ = [
    "comparisons_admin",
    "generation_admin",
    "moderation_admin",
    "registry_admin",
    "runs_admin",
    "workers_admin",
]
