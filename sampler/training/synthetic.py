"""Synthetic rankings whose preference is a known rule, from simulated noisy trainers.

For tests and benchmarks: the rule fixes the best possible held-out accuracy (its noise
ceiling), so a trainer can be judged against it. Records have the export's ``rankings`` format.

Rules: ``length`` (the longer reply wins; all K replies differ in length, so every ranking is a
total order with C(K,2) pairs) and ``keyword`` (replies containing the keyword win; the others
tie). A simulated trainer follows the rule but, with probability ``noise``, hands in the
reversed ordering: every pair of that ranking is then wrong, so the ceiling is 1 - noise.
"""

from __future__ import annotations

import random

FILLER_TEXT = (
    "i think that is a good idea but we can talk about it later today "
    "my friend likes music and movies so we went out to see the new one "
    "what do you do for fun on the weekend when the weather is nice"
)
WORDS = tuple(dict.fromkeys(FILLER_TEXT.split()))
PROMPTS = (
    "what did you do today?",
    "do you like music?",
    "any plans for the weekend?",
    "how was your day?",
    "what is your favorite movie?",
    "do you have any pets?",
)
KEYWORD = "pineapple"


def _reply(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def _candidates(rng: random.Random, k: int, rule: str) -> tuple[list[str], list[list[int]]]:
    """K reply texts and the rule's ordering (groups of indices, best first)."""
    if rule == "length":
        lengths = rng.sample(range(2, 2 + 3 * k), k)
        texts = [_reply(rng, n) for n in lengths]
        return texts, [[i] for i in sorted(range(k), key=lambda i: -lengths[i])]
    if rule == "keyword":
        with_keyword = set(rng.sample(range(k), k // 2))
        texts = []
        for index in range(k):
            words = _reply(rng, rng.randint(3, 8)).split()
            if index in with_keyword:
                words.insert(rng.randrange(len(words) + 1), KEYWORD)
            texts.append(" ".join(words))
        return texts, [sorted(with_keyword), sorted(set(range(k)) - with_keyword)]
    raise ValueError(f"Unknown rule {rule!r}; use 'length' or 'keyword'.")


def synthetic_rankings(
    count: int,
    *,
    k: int = 4,
    rule: str = "length",
    noise: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[dict]:
    """``count`` ranking records, one conversation each; ``rule_agrees`` says whether the
    simulated trainer followed the rule (for measuring the realised ceiling)."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        texts, groups = _candidates(rng, k, rule)
        follows_rule = rng.random() >= noise
        ordering_groups = groups if follows_rule else groups[::-1]
        ids = [1000 * index + position for position in range(k)]
        records.append(
            {
                "schema_version": 1,
                "ranking_id": index,
                "conversation_id": index,
                "split": "test" if rng.random() < test_fraction else "train",
                "prompt": [{"role": "user", "content": rng.choice(PROMPTS)}],
                "candidates": [
                    {"candidate_id": ids[i], "text": text} for i, text in enumerate(texts)
                ],
                "ordering": [[ids[i] for i in group] for group in ordering_groups],
                "cannot_rank": False,
                "rule_agrees": follows_rule,
            }
        )
    return records


def synthetic_demonstrations(count: int, *, seed: int = 0, ending: str = "") -> list[dict]:
    """Demonstration records (one user turn, one assistant reply ending with ``ending``)."""
    rng = random.Random(seed)
    records = []
    for index in range(count):
        reply = _reply(rng, rng.randint(3, 8))
        if ending:
            reply = f"{reply} {ending}"
        records.append(
            {
                "schema_version": 1,
                "conversation_id": index,
                "split": "train" if index % 10 else "test",
                "messages": [
                    {"role": "user", "content": rng.choice(PROMPTS)},
                    {"role": "assistant", "content": reply},
                ],
            }
        )
    return records
