# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.conversations.selectors import (
    conversation_counts_for_user,
    demonstration_chunks,
    demonstration_conversations,
    message_path,
    ranking_source_pick,
)

__all__ = [
    "conversation_counts_for_user",
    "demonstration_chunks",
    "demonstration_conversations",
    "message_path",
    "ranking_source_pick",
]
