"""The sampler app's models, defined in its feature packages; imported here so Django finds them."""

from sampler.comparisons.models import ModelComparison, SideBySide, SideBySideVote
from sampler.generation.models import GenerationJob, Sample
from sampler.moderation.models import ContentFilterProblem, ModerationResult
from sampler.registry.models import ModelVersion
from sampler.runs.models import TrainingRun

__all__ = [
    "ContentFilterProblem",
    "GenerationJob",
    "ModelComparison",
    "ModelVersion",
    "ModerationResult",
    "Sample",
    "SideBySide",
    "SideBySideVote",
    "TrainingRun",
]
