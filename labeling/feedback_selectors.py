# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.feedback.selectors import feedback_summaries

__all__ = ["feedback_summaries"]
