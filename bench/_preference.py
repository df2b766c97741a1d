"""Shared by the preference benchmarks (reward model, DPO): rankings in the pair form that TRL's
trainers read."""

from __future__ import annotations


def as_pairs(rankings: list[dict]) -> list[dict]:
    """Every implied pair of every ranking, in TRL's conversational prompt/chosen/rejected form."""
    pairs = []
    for record in rankings:
        texts = {c["candidate_id"]: c["text"] for c in record["candidates"]}
        ordering = record["ordering"]
        for rank, group in enumerate(ordering):
            for worse in ordering[rank + 1 :]:
                for winner in group:
                    for loser in worse:
                        pairs.append(
                            {
                                "prompt": record["prompt"],
                                "chosen": [{"role": "assistant", "content": texts[winner]}],
                                "rejected": [{"role": "assistant", "content": texts[loser]}],
                            }
                        )
    return pairs
