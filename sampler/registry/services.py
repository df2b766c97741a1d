"""Writes of the model registry: registering versions and promoting one to active."""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Lower
from django.utils import timezone
from huggingface_hub import try_to_load_from_cache

from config.querysets import saved_or_refused, saved_row_locked
from ranking.projects.selectors import projects_context_errors, sampling_context_lock
from sampler.generation.backends import validate_options
from sampler.generation.params import MIN_PROMPT_TOKENS, context_too_short
from sampler.registry.models import MAX_CONTEXT_LENGTH, ModelVersion
from sampler.registry.selectors import (
    DATA_SIZE_KEYS,
    KEY_METRICS,
    model_version_active,
    model_version_name_taken,
    policy_version_by_path,
    sampler_model_path,
)
from sampler.training.config import DATA_HALVES

logger = logging.getLogger(__name__)

# Conversations a reward model scores per forward pass.
REWARD_BATCH_SIZE = 16
# Names of the context length in model configs, by architecture family.
CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")
# A Hugging Face hub id: ``name`` or ``org/name``.
HUB_ID = re.compile(r"\w[\w.-]*(/\w[\w.-]*)?")


def model_folder(path: str) -> Path | None:
    """Where the model ``path`` names is on this machine: the absolute folder itself, or a hub
    id's snapshot in this machine's Hugging Face cache; None when there is no ``config.json``
    there. The hub itself is never asked: offline, each worker would spend its retries on it."""
    if not path:
        return None
    local = Path(path)
    if local.is_absolute():
        return local if (local / "config.json").is_file() else None
    if not HUB_ID.fullmatch(path) or ".." in path or local.exists():
        return None
    cached = try_to_load_from_cache(path, "config.json")
    return Path(cached).parent if isinstance(cached, str) else None


def _not_found_message(path: str) -> str:
    """Why the model ``path`` of a version run here cannot be loaded on this machine."""
    if Path(path).is_absolute():
        return (
            f"its model folder {path} is gone (no config.json there): restore it, or point "
            "the version at where the model now is."
        )
    return (
        f"{path} is neither a model folder nor a Hugging Face Hub model in this machine's cache "
        f"(offline, no worker could load it): download it first (hf download "
        f"{path}, with the HF_HOME the server and workers use), or give the absolute path of a "
        "folder holding its config.json."
    )


def _model_config(path: str) -> dict:
    """A model's ``config.json`` (empty when it has none, or one that is no object)."""
    folder = model_folder(path)
    if folder is None:
        return {}
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def model_context_length(path: str) -> int | None:
    """The context length a model directory's ``config.json`` states (None when it does not)."""
    config = _model_config(path)
    configs = [config, config.get("text_config") or {}]
    for candidate in configs:
        for key in CONTEXT_LENGTH_KEYS:
            value = candidate.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _model_context_is_scaled(path: str) -> bool:
    """Whether the config scales its rotary positions (YaRN, linear, dynamic...): the model then
    takes more than the positions the config states, by rules that differ per scaling type."""
    config = _model_config(path)
    return any(
        candidate.get("rope_scaling") for candidate in (config, config.get("text_config") or {})
    )


def _validated_backend(
    *, kind: str, backend: str, options: object, path: str, loadable: bool = True
) -> tuple[str, dict]:
    if backend not in ModelVersion.Backend.values:
        raise ValidationError(
            {"backend": f"backend must be one of {', '.join(ModelVersion.Backend.values)}."}
        )
    if kind != ModelVersion.Kind.POLICY and backend != ModelVersion.Backend.TRANSFORMERS:
        raise ValidationError({"backend": "Reward models run in the worker (transformers)."})
    if not isinstance(options, dict):
        raise ValidationError({"backend_options": "backend_options must be an object."})
    errors = validate_options(backend, options)
    if errors:
        raise ValidationError(
            {"backend_options": [f"{key}: {text}" for key, text in errors.items()]}
        )
    if backend != ModelVersion.Backend.OPENAI and not path:
        raise ValidationError({"path": "A model directory is needed for this backend."})
    if loadable and backend != ModelVersion.Backend.OPENAI:
        folder = model_folder(path)
        if folder is None:
            # Run here: a hub id must already be in the cache (an absolute folder without its
            # config.json was refused with the path).
            raise ValidationError({"path": _not_found_message(path)})
        if not model_folder_has_chat_template(folder):
            raise ValidationError({"path": _no_chat_template_message(path)})
    return backend, options


def _no_chat_template_message(path: str) -> str:
    """Why a model whose tokenizer has no chat template is neither registered nor promoted."""
    return (
        f"The tokenizer at {path} has no chat template: every chat it was asked to write would "
        "fail. Add one (chat_template in its tokenizer_config.json, or a chat_template.jinja "
        "beside it)."
    )


def model_folder_has_chat_template(folder: Path) -> bool:
    """Whether the tokenizer in ``folder`` has a chat template, as transformers finds one when it
    loads it (a ``chat_template`` in ``tokenizer_config.json``, a ``chat_template.jinja``, a named
    one in ``additional_chat_templates/``), read from its files alone: no tokenizer is loaded.
    (A ``chat_template.json`` is a processor's: the tokenizer does not read it.)"""
    if (folder / "chat_template.jinja").is_file():
        return True
    if any((folder / "additional_chat_templates").glob("*.jinja")):
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and bool(config.get("chat_template"))


def _validated_path(path: object, *, loadable: bool = True) -> str:
    if not isinstance(path, str) or len(path) > 1000 or "\x00" in path:
        raise ValidationError({"path": "path must be text of at most 1000 characters."})
    local = Path(path) if path else None
    if local is not None and not local.is_absolute():
        # Each process (the web server, every worker) would read a relative folder from where
        # it was started: one finds the model, another asks the hub for it.
        if not HUB_ID.fullmatch(path) or ".." in path:
            raise ValidationError(
                {"path": "path must be an absolute directory or a hub id (name or org/name)."}
            )
        if local.exists():
            raise ValidationError(
                {
                    "path": f"{path} is a folder relative to where this process runs: give its "
                    "absolute path (a worker started elsewhere would not find it)."
                }
            )
    if (
        loadable
        and local is not None
        and local.is_absolute()
        and not (local / "config.json").is_file()
    ):
        raise ValidationError({"path": f"{path} is not a model directory (no config.json)."})
    return path


def _model_architectures(path: str) -> list[str]:
    """The ``architectures`` a model's ``config.json`` names (none: unknown)."""
    names = _model_config(path).get("architectures")
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else []


def _check_kind_matches(*, kind: str, path: str) -> None:
    """A reward model's directory (a sequence classifier: one score, no language head) is no
    policy, and a language model's is no reward model; refused by what its config names."""
    if not path:
        return
    architectures = _model_architectures(path)
    scorer = [name for name in architectures if name.endswith("ForSequenceClassification")]
    if kind == ModelVersion.Kind.POLICY and scorer:
        raise ValidationError(
            {
                "kind": f"{path} holds a reward model ({scorer[0]}), which writes no text: "
                "register it with kind 'reward'."
            }
        )
    if kind == ModelVersion.Kind.REWARD and architectures and not scorer:
        raise ValidationError(
            {
                "kind": f"{path} holds {architectures[0]}, not a reward model (a "
                "...ForSequenceClassification with one score): register it as a policy, or "
                "train a reward model from it (train_reward --base)."
            }
        )


def _serving_context_length(
    *, kind: str, backend: str, options: dict, path: str, given: object
) -> int | None:
    """The context the version serves: as given, else its config's, capped by vLLM's
    ``max_model_len``; an ``openai`` version without a local config must state it. A version
    run here (transformers, vllm) takes no more than its config states (unless it scales its
    rotary positions), and a length read from the config fits the column. A policy's holds a
    reply after ``MIN_PROMPT_TOKENS`` of prompt: a shorter one has every job refused (Try the
    model, a project's tasks, red-teaming, comparisons: ``context_room_error``)."""
    if given is not None and (not isinstance(given, int) or isinstance(given, bool) or given < 1):
        raise ValidationError({"context_length": "context_length must be a positive integer."})
    configured = model_context_length(path) if path else None
    if given is None and configured is not None and configured > MAX_CONTEXT_LENGTH:
        raise ValidationError(
            {
                "context_length": (
                    f"{path}/config.json states {configured} tokens of context, more than the "
                    f"{MAX_CONTEXT_LENGTH} a version can record: give context_length (the "
                    "tokens it serves)."
                )
            }
        )
    runs_here = backend != ModelVersion.Backend.OPENAI
    if (
        runs_here
        and given is not None
        and configured is not None
        and given > configured
        and not _model_context_is_scaled(path)
    ):
        raise ValidationError(
            {
                "context_length": (
                    f"context_length {given} is longer than the model takes: its config.json "
                    f"allows at most {configured} tokens."
                )
            }
        )
    length = given or configured
    cap = options.get("max_model_len") if backend == ModelVersion.Backend.VLLM else None
    if length is not None and cap is not None:
        length = min(length, cap)
    if length is None and backend == ModelVersion.Backend.OPENAI:
        raise ValidationError(
            {
                "context_length": (
                    "Give the context length the server serves (tokens of prompt plus reply): "
                    "requests that cannot fit are refused before they are queued."
                )
            }
        )
    if kind == ModelVersion.Kind.POLICY and length is not None and length <= MIN_PROMPT_TOKENS:
        raise ValidationError(
            {
                "context_length": (
                    f"{context_too_short(length)} Give a policy a context_length of more than "
                    f"{MIN_PROMPT_TOKENS}."
                )
            }
        )
    return length


def model_version_serving_check(
    *,
    kind: str,
    backend: str,
    options: object,
    path: object,
    context_length: object,
    loadable: bool = True,
) -> tuple[str, dict, str, int | None]:
    """(backend, options, path, context length) as they would be stored; ``ValidationError``
    with every problem by field otherwise (the admin form shows them).

    ``loadable``: whether the model must be found here (a folder with its config.json, a hub
    id in the cache). The admin asks it only of a new version or a changed path or backend:
    a saved version whose folder has since gone keeps its notes and fields editable, and its
    promotion still checks it (``model_version_promote``)."""
    path = _validated_path(path, loadable=loadable)
    _check_kind_matches(kind=kind, path=path)
    backend, options = _validated_backend(
        kind=kind, backend=backend, options=options, path=path, loadable=loadable
    )
    length = _serving_context_length(
        kind=kind, backend=backend, options=options, path=path, given=context_length
    )
    return backend, options, path, length


def model_version_kind_error(*, version: ModelVersion, kind: str) -> str | None:
    """Why the saved ``version`` cannot become ``kind`` (None: it can): the active version of
    its kind and a project's policy keep theirs (the admin form checks with it).

    The row is read as it is now and locked: called in the transaction that saves the change,
    a promotion made since the caller read ``version`` is seen, and one started later waits
    for the save."""
    if version.pk is None:
        return None
    saved = ModelVersion.objects.select_for_update().filter(pk=version.pk).first()
    if saved is None or kind == saved.kind:
        return None
    if saved.is_active:
        return (
            f"{saved.name} is the active {saved.kind}: it keeps its kind (promote another "
            f"{saved.kind} first)."
        )
    if saved.project_policies.exists():
        return f"{saved.name} is a policy of a project: it stays a policy."
    return None


def model_version_parent_error(*, version: ModelVersion, parent: ModelVersion | None) -> str | None:
    """Why ``parent`` cannot be the saved ``version``'s parent (None: it can): not the version
    itself nor one of its descendants, which would make a loop with no root (the admin form
    checks with it)."""
    if version.pk is None or parent is None:
        return None
    ancestor_id, seen = parent.pk, set()
    while ancestor_id is not None and ancestor_id not in seen:
        if ancestor_id == version.pk:
            return (
                f"{parent.name} is {version.name} or descends from it: a version cannot be its "
                "own parent or ancestor."
            )
        seen.add(ancestor_id)
        ancestor_id = (
            ModelVersion.objects.filter(pk=ancestor_id).values_list("parent_id", flat=True).first()
        )
    return None


# A version's name is often its hub id (``org/model``), and the default name of a version
# trained from it is made a folder's by dropping what cannot be one; a name that climbs out of a
# folder (``../x``), hides (``.x``) or nests deeper is refused at every door that names one (the
# API, the admin); a run's output name, its folder's, takes no slash at all.
MODEL_VERSION_NAME_RULE = (
    "A model version's name is a folder's name or a hub id (org/name): at most one slash, "
    "between two parts, no backslash, and no part begins with a dot."
)


def model_version_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a model version's (None: it can, as far as its form goes)."""
    parts = name.split("/")
    if "\\" in name or len(parts) > 2 or any(not part or part.startswith(".") for part in parts):
        return MODEL_VERSION_NAME_RULE
    return None


def model_version_metrics_problem(metrics: object) -> str | None:
    """Why ``metrics`` cannot be a version's (None: they can): what reads them takes an object
    (names and values) whose known entries have their types: the Models page's numbers
    (``KEY_METRICS``) and counts (``data``, ``DATA_SIZE_KEYS``), why a run stopped early (text,
    or null where it did not), and what comparisons read to keep a reward model from judging a
    policy optimised against it (the name ``reward_version``, the ``data_half`` it was trained
    on). Entries of other names are kept as they are."""
    if not isinstance(metrics, dict):
        return (
            "Metrics must be a JSON object of names and values, such as "
            '{"eval/kl": 0.12}, not ' + _json_kind(metrics) + "."
        )
    if not _all_finite(metrics):
        return "Metrics cannot hold NaN, Infinity or numbers too large to store."
    problems = [
        f"{name} must be a number."
        for name, _ in KEY_METRICS
        if name in metrics and not _is_number(metrics[name])
    ]
    if "data" in metrics:
        data = metrics["data"]
        if not isinstance(data, dict):
            problems.append('data must be an object of counts, such as {"prompts/train": 100}.')
        else:
            problems += [
                f"data: {name} must be a whole number, 0 or more."
                for name in DATA_SIZE_KEYS
                if name in data and not (_is_number(data[name]) and _is_count(data[name]))
            ]
    # None: a PPO run that was not stopped early records it so (``train_ppo``).
    if not isinstance(metrics.get("stopped_early"), str | None):
        problems.append("stopped_early must be text (why training stopped early), or null.")
    reward = metrics.get("reward_version")
    if "reward_version" in metrics and not (isinstance(reward, str) and reward.strip()):
        problems.append(
            "reward_version must be the name of the reward model the policy was optimised "
            "against, as text."
        )
    if "data_half" in metrics and metrics["data_half"] not in DATA_HALVES:
        problems.append(
            f"data_half must be one of {', '.join(DATA_HALVES)} (the half of the rankings a "
            "reward model was trained on)."
        )
    return " ".join(problems) or None


def _json_kind(value: object) -> str:
    for kind, name in ((bool, "true or false"), (str, "text"), (list, "a list")):
        if isinstance(value, kind):
            return name
    return "nothing" if value is None else "a number"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_count(value: int | float) -> bool:
    return value >= 0 and float(value).is_integer()


def _all_finite(value: object) -> bool:
    """No NaN, infinity or number past a float's range anywhere in ``value`` (JSON read
    leniently, as Python's reader does, holds them; PostgreSQL refuses the first two, and the
    pages that show a metric as a float break on all three)."""
    if _is_number(value):
        try:
            return math.isfinite(float(value))
        except OverflowError:
            return False
    if isinstance(value, dict):
        return all(_all_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_all_finite(item) for item in value)
    return True


def model_version_register(
    *,
    name: str,
    path: str,
    kind: str = ModelVersion.Kind.POLICY,
    source: str = ModelVersion.Source.REGISTERED,
    parent: ModelVersion | None = None,
    training_run_id: int | None = None,
    metrics: dict | None = None,
    description: str = "",
    backend: str = ModelVersion.Backend.TRANSFORMERS,
    backend_options: dict | None = None,
    context_length: int | None = None,
) -> ModelVersion:
    """Register a model version (never promoted here).

    A local directory must hold a ``config.json`` naming a model of ``kind`` (a sequence
    classifier for a reward model, none for a policy); its context length is recorded unless given
    (an ``openai`` version served elsewhere states its own; a ``vllm`` one is capped by its
    ``max_model_len``). A name another version has, in any letter case, is refused.
    """
    if taken := model_version_name_taken(name=name):
        raise ValidationError({"name": taken})
    path = _validated_path(path)
    _check_kind_matches(kind=kind, path=path)
    # After the path's checks: SAMPLER_MODEL's version is named by its path where no folder
    # holds it (a hub id), and a path that names nothing is refused as such.
    if problem := model_version_name_problem(name):
        raise ValidationError({"name": problem})
    options = {} if backend_options is None else backend_options
    backend, options = _validated_backend(kind=kind, backend=backend, options=options, path=path)
    version = ModelVersion(
        name=name,
        path=path,
        kind=kind,
        source=source,
        parent=parent,
        training_run_id=training_run_id,
        metrics=metrics or {},
        description=description,
        backend=backend,
        backend_options=options,
        context_length=_serving_context_length(
            kind=kind, backend=backend, options=options, path=path, given=context_length
        ),
    )
    version.full_clean()
    _save_named(version)
    return version


@transaction.atomic
def model_version_save(*, version: ModelVersion, fields: list[str] | None = None) -> ModelVersion:
    """Save ``version`` as an edit left it (the admin's form, which checked it): only
    ``fields`` when given (a saved version's: the row was read before, and writing all of it
    back would undo a promotion made meanwhile); ModelVersion.DoesNotExist, nothing saved, when
    the version was deleted since it was read. A name another version took since the check is
    refused as the check refuses it (``_save_named``). A new name reaches, in the same
    transaction, the policies whose metrics name the version as the reward model they were
    optimised against (``_reward_name_followed``)."""
    stored_name = None
    if version.pk is not None:
        # Locked: a rename of this version under way is waited for, and the name it leaves
        # read; a version deleted since the edit read it is not saved (nor made again).
        stored_name = saved_row_locked(version, "name")
    _save_named(version, update_fields=fields)
    renamed = stored_name is not None and stored_name != version.name
    if renamed and (fields is None or "name" in fields):
        _reward_name_followed(old=stored_name, new=version.name)
    return version


def _reward_name_followed(*, old: str, new: str) -> None:
    """A PPO policy names the reward model it was optimised against by its name, in its
    metrics (``reward_version``: what it was registered with, and what comparisons read to keep
    that model from judging it): the policies naming ``old``, in any letter case (a name is one
    version's so), name ``new`` instead."""
    naming = (
        ModelVersion.objects.select_for_update()
        .alias(reward_name=Lower(KeyTextTransform("reward_version", "metrics")))
        .filter(reward_name=Lower(Value(old)))
        .order_by("pk")
    )
    for policy in naming.only("pk", "metrics"):
        policy.metrics["reward_version"] = new
        policy.save(update_fields=["metrics"])


def _save_named(version: ModelVersion, **save) -> None:
    """``version.save(**save)``; a name another version took (in any letter case) after the
    caller's check saw it free (two saves at the same moment) is the name's ValidationError, in
    the words of ``model_version_name_taken``, and nothing is saved (``saved_or_refused``)."""

    def clashes() -> dict[str, str]:
        taken = model_version_name_taken(name=version.name, exclude_pk=version.pk)
        return {} if taken is None else {"name": taken}

    saved_or_refused(lambda: version.save(**save), clashes)


UNSET = object()


@transaction.atomic
def model_version_serving_update(
    *,
    version: ModelVersion,
    backend: str | object = UNSET,
    backend_options: dict | object = UNSET,
    path: str | object = UNSET,
    context_length: int | object | None = UNSET,
) -> ModelVersion:
    """Change how a version is served (backend, its options, the directory, the context
    length), validated as at registration. A changed backend or directory re-reads the context
    length unless one is given. A new path or backend must name a model found here. A context
    too short for the ``max_new_tokens`` of a project that samples from the version is refused
    (a project's save under way is waited for: ``sampling_context_lock``). Jobs already sampled
    keep their provenance (the version's name)."""
    sampling_context_lock()
    version = ModelVersion.objects.select_for_update().get(pk=version.pk)
    new_backend = version.backend if backend is UNSET else backend
    # As in the admin: the model must be found here only when what serves it or where it is
    # changes, so a version whose folder has gone still takes other changes (its promotion
    # checks it again).
    loadable = (path is not UNSET and path != version.path) or new_backend != version.backend
    new_path = version.path if path is UNSET else _validated_path(path, loadable=loadable)
    _check_kind_matches(kind=version.kind, path=new_path)
    if backend_options is UNSET:
        # Options belong to a backend: switching backends without new options drops them.
        options = version.backend_options if new_backend == version.backend else {}
    else:
        options = backend_options
    new_backend, options = _validated_backend(
        kind=version.kind, backend=new_backend, options=options, path=new_path, loadable=loadable
    )
    if context_length is UNSET:
        served_changed = (new_backend, new_path, options) != (
            version.backend,
            version.path,
            version.backend_options,
        )
        given = None if served_changed else version.context_length
        if served_changed and new_backend == ModelVersion.Backend.OPENAI:
            given = version.context_length
    else:
        given = context_length
    length = _serving_context_length(
        kind=version.kind, backend=new_backend, options=options, path=new_path, given=given
    )
    if error := model_version_context_change_error(version=version, context_length=length):
        raise ValidationError({"context_length": error})
    version.backend, version.path, version.backend_options = new_backend, new_path, options
    version.context_length = length
    version.full_clean()
    version.save(update_fields=["backend", "path", "backend_options", "context_length"])
    return version


def model_version_project_context_error(*, version: ModelVersion, active: bool) -> str | None:
    """Why ``version`` as it stands here (its ``context_length`` as it is to be saved;
    ``active``: it is, or is to be, the active policy) would have every task of a project that
    samples from it refused: each such project's ``max_new_tokens`` its context has no room
    for, in the words a project's save uses (``projects_context_errors``). None: each fits."""
    found = projects_context_errors(version=version, active=active)
    if not found:
        return None
    return " ".join(
        f"Project {project.name!r} ({project.slug}) would sample from {version.name} with "
        f"max_new_tokens={project.sampling_params['max_new_tokens']}. {problem} Lower the "
        "project's max_new_tokens first."
        for project, problem in found
    )


def model_version_context_change_error(
    *, version: ModelVersion, context_length: int | None
) -> str | None:
    """Why the saved ``version`` cannot take ``context_length`` (None: it can, or it is
    unchanged): a project that samples from it asks for a ``max_new_tokens`` the shorter
    context has no room for (``model_version_project_context_error``). The row is read as it
    is now (whether it is the active policy); the admin form checks with it too. The caller
    holds ``sampling_context_lock``, taken before the version's row is locked."""
    saved = ModelVersion.objects.filter(pk=version.pk).first() if version.pk else None
    if saved is None or saved.context_length == context_length:
        return None
    saved.context_length = context_length
    return model_version_project_context_error(version=saved, active=saved.is_active)


@transaction.atomic
def model_version_delete(*, ids: list[int]) -> None:
    """Delete the versions ``ids``; ValidationError, deleting none, when one is active (with
    no active policy the next suggestion would quietly register and serve SAMPLER_MODEL).
    Their rows are locked before the check, so a promotion under way is waited for and seen."""
    active = list(
        ModelVersion.objects.select_for_update()
        .filter(pk__in=ids)
        .order_by("pk")
        .values_list("name", "is_active")
    )
    named = [name for name, is_active in active if is_active]
    if named:
        raise ValidationError({"version": f"Active (promote another first): {', '.join(named)}."})
    ModelVersion.objects.filter(pk__in=ids).delete()


def model_version_unloadable_error(*, version: ModelVersion) -> str | None:
    """Why ``version``'s model cannot be loaded on this machine (None: it can, or it is served
    elsewhere): its folder was removed since it was registered, or its hub id is not in the
    cache."""
    if version.backend == ModelVersion.Backend.OPENAI or model_folder(version.path) is not None:
        return None
    if not version.path:
        return "it names no model directory"
    return _not_found_message(version.path)


def model_version_activation_error(*, version: ModelVersion) -> str | None:
    """Why ``version`` (as saved, read under ``sampling_context_lock``) cannot become the
    active version of its kind (None: it can): its model cannot be loaded here, or its
    tokenizer has no chat template (a version registered before registration asked for one, or
    whose template was removed since; one served elsewhere, ``openai``, is not asked, as at
    registration): each suggestion would fail; or a project that would sample from it as the
    active policy asks for a ``max_new_tokens`` its context has no room for (each preparation
    of that project's pool would be refused). Every way a version becomes active asks it: a
    promotion (the Models page, ``manage.py promote``) and the default policy's activation
    (``model_version_ensure_default``)."""
    return _model_version_serving_error(version=version) or model_version_project_context_error(
        version=version, active=True
    )


def _model_version_serving_error(*, version: ModelVersion) -> str | None:
    """``model_version_activation_error``'s reasons that lie in the version itself."""
    if error := model_version_unloadable_error(version=version):
        return error
    folder = model_folder(version.path)
    if (
        version.backend != ModelVersion.Backend.OPENAI
        and folder is not None
        and not model_folder_has_chat_template(folder)
    ):
        return _no_chat_template_message(version.path)
    return None


class DefaultPolicyHeldByProjects(ValidationError):
    """The default policy could serve, but a project asks for a ``max_new_tokens`` its context
    has no room for: nothing is made active until that project's limit is lowered."""


@transaction.atomic
def model_version_promote(*, version: ModelVersion) -> ModelVersion:
    """Make ``version`` the one active version of its kind, in one atomic switch; refused
    (``ValidationError``) for ``model_version_activation_error``'s reasons. A project's save
    under way is waited for, and one started later waits for the promotion
    (``sampling_context_lock``)."""
    sampling_context_lock()
    # Concurrent promotions serialise here; the version is checked as it is saved.
    locked = list(ModelVersion.objects.select_for_update().filter(kind=version.kind).order_by("pk"))
    saved = next((row for row in locked if row.pk == version.pk), version)
    if error := model_version_activation_error(version=saved):
        raise ValidationError({"version": f"{version.name} cannot be promoted: {error}"})
    ModelVersion.objects.filter(kind=version.kind, is_active=True).exclude(pk=version.pk).update(
        is_active=False
    )
    now = timezone.now()
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=now)
    version.refresh_from_db()
    logger.info("Promoted %s to active %s", version.name, version.kind)
    return version


def model_version_ensure_default() -> ModelVersion:
    """Register ``SAMPLER_MODEL`` and make it active when no policy is active yet; refused
    (``ValidationError``, nothing registered) for ``model_version_activation_error``'s reasons,
    as ``DefaultPolicyHeldByProjects`` where only a project's ``max_new_tokens`` stands in the way.

    A policy another process activates meanwhile (an admin's promotion, another worker's
    default) stays active and is returned: a promotion or default under way is waited for
    (``sampling_context_lock``) and then seen, and should one be activated past that lock, the
    one-active-version constraint refuses this activation and the registration made for it is
    rolled back. With a policy active (every suggestion after the first asks here) it is read
    without the lock, so suggestions never wait on a promotion or a project's save."""
    active = model_version_active()
    if active is not None:
        return active
    try:
        return _default_activate()
    except IntegrityError:
        active = model_version_active()
        if active is None:
            raise
        return active


@transaction.atomic
def _default_activate() -> ModelVersion:
    # Before the read below: a promotion or a project's save under way is waited for and seen.
    sampling_context_lock()
    active = model_version_active()
    if active is not None:
        return active
    path = sampler_model_path()
    version = policy_version_by_path(path=path)
    if version is None:
        version = _sampler_model_register(path=path)
    # Checked as a promotion is: a project saved while no policy was active was checked
    # against no context. Refused, the registration made for it is rolled back.
    if error := _model_version_serving_error(version=version):
        raise ValidationError(
            {"version": f"{version.name} cannot be made the active policy: {error}"}
        )
    if error := model_version_project_context_error(version=version, active=True):
        raise DefaultPolicyHeldByProjects(
            {"version": f"{version.name} cannot be made the active policy: {error}"}
        )
    # Not model_version_promote: that would deactivate a policy activated since the check above
    # by a write that took no lock; this activation fails (IntegrityError) if one committed.
    ModelVersion.objects.filter(pk=version.pk, is_active=False).update(
        is_active=True, activated_at=timezone.now()
    )
    version.refresh_from_db()
    logger.info("Activated %s, the default policy", version.name)
    return version


def _sampler_model_register(*, path: str) -> ModelVersion:
    """SAMPLER_MODEL's version, under its folder's name (numbered when that is taken, in any
    letter case)."""
    is_embedded = Path(path).resolve() == Path(settings.EMBEDDED_MODEL_DIR).resolve()
    stem = Path(path).name if Path(path).exists() else path
    name, number = stem, 1
    while model_version_name_taken(name=name):
        number += 1
        name = f"{stem}-{number}"
    try:
        return model_version_register(
            name=name,
            path=path,
            source=ModelVersion.Source.EMBEDDED if is_embedded else ModelVersion.Source.CONFIGURED,
            description="Registered from SAMPLER_MODEL.",
        )
    except ValidationError:
        # Another process (the web server's start, a first request) registered it meanwhile.
        version = policy_version_by_path(path=path)
        if version is None:
            raise
        return version


def _reward_max_length(version: ModelVersion) -> int:
    """The length the reward model was trained on (its run's config), else the default."""
    # The training config is torch-free; the reward model itself loads below.
    from sampler.training.config import RewardConfig

    run = version.training_run
    configured = (run.config or {}).get("max_length") if run is not None else None
    return int(configured or RewardConfig().max_length)


def reward_version_score(
    *, version: ModelVersion, conversations: list[list[dict]]
) -> list[float | None]:
    """Reward of each conversation (read at its last assistant turn) from a reward version,
    scored the way training scores it (the score at the last real token); None for a
    conversation with nothing to score."""
    # torch and transformers load in workers only: web processes never import them.
    from sampler.generation.sampling import pick_device
    from sampler.training.data import demonstration_ids
    from sampler.training.model import (
        RewardScorer,
        build_reward_model,
        load_tokenizer,
        turn_end_ids,
    )
    from sampler.training.reward import score_sequences

    if version.kind != ModelVersion.Kind.REWARD:
        raise ValidationError({"version": f"{version.name} is not a reward model."})
    tokenizer = load_tokenizer(version.path)
    scorer = RewardScorer(build_reward_model(version.path, tokenizer))
    device, _ = pick_device(settings.SAMPLER_DEVICE)
    scorer.to(device)
    max_length = _reward_max_length(version)
    end_ids = turn_end_ids(version.path, tokenizer)
    sequences = [
        demonstration_ids(tokenizer, messages, max_length=max_length, end_ids=end_ids)
        for messages in conversations
    ]
    kept = [index for index, ids in enumerate(sequences) if ids]
    values = score_sequences(
        scorer,
        [sequences[index] for index in kept],
        pad_id=tokenizer.pad_token_id,
        batch_size=REWARD_BATCH_SIZE,
    ).tolist()
    by_index = dict(zip(kept, values, strict=True))
    return [by_index.get(index) for index in range(len(conversations))]
