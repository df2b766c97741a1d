# Merge shim: re-exports for code outside sampler; the lead removes it after the merge.
from sampler.generation.selectors import generation_job_get
from sampler.registry.selectors import model_version_active

__all__ = ["generation_job_get", "model_version_active"]
