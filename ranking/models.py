"""The ranking app's models, defined in its feature packages; imported here so Django finds them."""

from ranking.exports.models import DatasetExport
from ranking.gold.models import Qualification
from ranking.projects.models import Project, ProjectPolicy
from ranking.quality.models import TrainerTrust, TrustEstimate
from ranking.rank.models import Assignment, Candidate, Ranking, RankingTask, UndoRemoval

__all__ = [
    "Assignment",
    "Candidate",
    "DatasetExport",
    "Project",
    "ProjectPolicy",
    "Qualification",
    "Ranking",
    "RankingTask",
    "TrainerTrust",
    "TrustEstimate",
    "UndoRemoval",
]
