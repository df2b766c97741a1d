# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.guidelines.selectors import guideline_version_numbers

__all__ = ["guideline_version_numbers"]
