# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.guidelines.services import guideline_version_ensure_current

__all__ = ["guideline_version_ensure_current"]
