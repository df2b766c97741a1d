"""The model versions a run starts from (or is judged with): the named one or the active one of
its kind, with a local folder that still holds a model.
"""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError

from sampler.registry.models import ModelVersion
from sampler.registry.selectors import model_version_active

# A version's kind, in a sentence.
KIND_WORDS = {ModelVersion.Kind.POLICY: "policy", ModelVersion.Kind.REWARD: "reward model"}


def validated_version(version: ModelVersion | None, kind: str, field_name: str) -> ModelVersion:
    version = version or model_version_active(kind=kind)
    if version is None:
        raise ValidationError(
            {field_name: f"No active {KIND_WORDS[kind]}: promote one or name the version."}
        )
    if version.kind != kind:
        raise ValidationError(
            {
                field_name: f"{version.name} is a {KIND_WORDS[version.kind]}, not a "
                f"{KIND_WORDS[kind]}: name a {KIND_WORDS[kind]}."
            }
        )
    if not version.path:
        raise ValidationError({field_name: f"{version.name} has no local model directory."})
    if problem := model_folder_problem(version):
        raise ValidationError({field_name: problem})
    return version


def model_folder_problem(version: ModelVersion) -> str:
    """Why ``version``'s local folder cannot be loaded ("" when it may be): registration checked
    it, but a folder can be moved or deleted since (a hub id, not a local path, is left alone)."""
    path = Path(version.path)
    if path.is_absolute() and not (path / "config.json").is_file():
        return (
            f"{version.name}'s folder {version.path} holds no model (no config.json): was it "
            "moved or deleted?"
        )
    return ""
