"""What human rankings say about two model versions against each other."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ranking.models import Candidate, Ranking, RankingTask


@dataclass(frozen=True)
class HumanPreference:
    """Over every ranking of a task holding replies of both versions: each (reply of A, reply
    of B) pair counts once per ranking as a win of A, a win of B or a tie."""

    rankings: int
    wins_a: int
    wins_b: int
    ties: int

    @property
    def pairs(self) -> int:
        return self.wins_a + self.wins_b + self.ties

    @property
    def win_rate_a(self) -> float | None:
        """Ties count half; None without any pair."""
        return (self.wins_a + 0.5 * self.ties) / self.pairs if self.pairs else None


def human_preference_between_versions(*, version_a_id: int, version_b_id: int) -> HumanPreference:
    tasks = RankingTask.objects.filter(candidates__message__model_version_id=version_a_id).filter(
        candidates__message__model_version_id=version_b_id
    )
    version_of: dict[int, int] = {}
    for candidate_id, version_id in Candidate.objects.filter(
        task__in=tasks, message__model_version_id__in=[version_a_id, version_b_id]
    ).values_list("id", "message__model_version_id"):
        version_of[candidate_id] = version_id
    counts: dict[str, int] = defaultdict(int)
    for ordering in Ranking.objects.filter(task__in=tasks, cannot_rank=False).values_list(
        "ordering", flat=True
    ):
        rank = {candidate: index for index, group in enumerate(ordering) for candidate in group}
        side_a = [c for c in rank if version_of.get(c) == version_a_id]
        side_b = [c for c in rank if version_of.get(c) == version_b_id]
        if not side_a or not side_b:
            continue
        counts["rankings"] += 1
        for a in side_a:
            for b in side_b:
                if rank[a] < rank[b]:
                    counts["wins_a"] += 1
                elif rank[a] > rank[b]:
                    counts["wins_b"] += 1
                else:
                    counts["ties"] += 1
    return HumanPreference(
        rankings=counts["rankings"],
        wins_a=counts["wins_a"],
        wins_b=counts["wins_b"],
        ties=counts["ties"],
    )
