# Merge shim: re-exports for code outside labeling; the lead removes it after the merge.
from labeling.redteam.selectors import (
    correction_attack_ids,
    red_team_conversation_ids,
    red_team_pair_chunks,
)

__all__ = ["correction_attack_ids", "red_team_conversation_ids", "red_team_pair_chunks"]
