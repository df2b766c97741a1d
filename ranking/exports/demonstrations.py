from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from labeling.conversations.selectors import demonstration_chunks
from labeling.guidelines.selectors import guideline_version_numbers
from labeling.redteam.selectors import (
    correction_attack_ids,
    red_team_conversation_ids,
)
from ranking.exports.filters import (
    CHUNK_SIZE,
    SCHEMA_VERSION,
    ExportFilters,
    chosen_split,
    day_bounds,
    pseudonym,
)


def demonstration_records(
    filters: ExportFilters, *, skipped: Counter | None = None
) -> Iterator[dict]:
    """Root-to-leaf paths of finished conversations, read whole from the conversation (no
    generation job's prompt to lose: ``skipped`` is taken for the other formats' sake)."""
    guideline_numbers = guideline_version_numbers()
    for chunk in demonstration_chunks(
        finished_bounds=day_bounds(filters),
        exclude_owner_ids=filters.exclude_trainer_ids,
        chunk_size=CHUNK_SIZE,
        red_team=filters.red_team,
        project_ids=filters.project_ids,
    ):
        red_team = red_team_conversation_ids(conversation_ids=[c for c, _, _ in chunk])
        corrections = correction_attack_ids(
            message_ids=[m.pk for c, _, path in chunk if c in red_team for m in path]
        )
        for conversation_id, owner_id, path in chunk:
            split = chosen_split(conversation_id, filters)
            if split is None:
                continue
            # The version the path's last reply was written under (None before versions).
            guideline_version = guideline_numbers.get(path[-1].guideline_version_id)
            if filters.guideline_versions and guideline_version not in filters.guideline_versions:
                continue
            attack_ids = [corrections[m.pk] for m in path if m.pk in corrections]
            yield {
                "schema_version": SCHEMA_VERSION,
                "messages": [{"role": m.role, "content": m.content} for m in path],
                "origins": [m.origin for m in path],
                "conversation_id": conversation_id,
                "leaf_message_id": path[-1].pk,
                "writer": pseudonym(owner_id, enabled=filters.pseudonymize),
                "split": split,
                "red_team": conversation_id in red_team,
                # The last successful attack this path corrects, if any.
                "attack_id": attack_ids[-1] if attack_ids else None,
                "guideline_version": guideline_version,
            }
