# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.conversations.services import message_add_alternatives

__all__ = ["message_add_alternatives"]
