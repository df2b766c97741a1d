import io
import json
import shutil

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from sampler.registry import services
from sampler.registry.models import MAX_CONTEXT_LENGTH, ModelVersion
from sampler.registry.services import (
    model_version_ensure_default,
    model_version_promote,
    model_version_register,
)


def test_register_rejects_a_local_path_that_is_not_a_model(db, tmp_path):
    with pytest.raises(ValidationError):
        model_version_register(name="empty", path=str(tmp_path))


def test_promotion_keeps_exactly_one_active_policy(policy, micro_model_dir):
    newer = model_version_register(name="micro-2", path=str(micro_model_dir), parent=policy)
    model_version_promote(version=newer)
    active = ModelVersion.objects.filter(kind="policy", is_active=True)
    assert list(active) == [newer]
    with pytest.raises(IntegrityError):
        ModelVersion.objects.filter(pk=policy.pk).update(is_active=True)


def test_ensure_default_registers_sampler_model_once(db, settings, micro_model_dir):
    settings.SAMPLER_MODEL = str(micro_model_dir)
    first = model_version_ensure_default()
    second = model_version_ensure_default()
    assert first == second and first.is_active and first.source == "configured"
    assert ModelVersion.objects.count() == 1


def test_ensure_default_model_warns_that_a_sampler_model_other_than_the_active_policy_is_ignored(
    policy, settings, micro_model_dir, tmp_path
):
    from django.core.management import call_command

    settings.SAMPLER_MODEL = str(tmp_path / "nonexistent")
    out, err = io.StringIO(), io.StringIO()
    call_command("ensure_default_model", stdout=out, stderr=err)
    assert out.getvalue() == f"Active policy: micro ({micro_model_dir})\n"
    assert err.getvalue() == (
        f"Warning: SAMPLER_MODEL names {tmp_path / 'nonexistent'}, not the active policy micro: "
        "it is registered and made active only while no policy is active, so it was not used. "
        "To switch, register it (the admin, or POST /api/model-versions/) and promote it "
        "(`manage.py promote NAME`, or the Promote button on the Models page).\n"
    )
    assert list(ModelVersion.objects.all()) == [policy]

    # Registered already (under another name): promoting it is all that is left.
    other = tmp_path / "other"
    shutil.copytree(micro_model_dir, other)
    model_version_register(name="other", path=str(other))
    settings.SAMPLER_MODEL = str(other)
    err = io.StringIO()
    call_command("ensure_default_model", stdout=io.StringIO(), stderr=err)
    assert "To switch, `manage.py promote other`." in err.getvalue()

    # SAMPLER_MODEL is the active policy: nothing to warn about.
    settings.SAMPLER_MODEL = str(micro_model_dir)
    err = io.StringIO()
    call_command("ensure_default_model", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""


@pytest.mark.parametrize("path", ["../models/run-1", "./run-1", "var/models/run-1", "run-dir"])
def test_register_refuses_a_relative_path_each_process_would_read_from_its_own_folder(
    db, tmp_path, monkeypatch, micro_model_dir, path
):
    # A model folder beside where this process runs: a worker started elsewhere would not find
    # it (and would ask the hub for it).
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run-dir").mkdir()
    (tmp_path / "run-dir" / "config.json").write_text((micro_model_dir / "config.json").read_text())
    with pytest.raises(ValidationError) as error:
        model_version_register(name="relative", path=path)
    assert "absolute" in " ".join(error.value.message_dict["path"])
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("hub_id", ["gpt2", "HuggingFaceTB/SmolLM2-135M-Instruct"])
@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_register_takes_a_hub_id_in_this_machines_cache(
    db, tmp_path, monkeypatch, micro_model_dir, hub_cache, hub_id, backend
):
    """A hub id is taken when its model is in the Hugging Face cache, and what its config says
    (context length, architectures) is read from there, as from a folder."""
    monkeypatch.chdir(tmp_path)
    hub_cache(hub_id, micro_model_dir)
    version = model_version_register(name="hub", path=hub_id, backend=backend)
    assert version.path == hub_id
    assert version.context_length == _positions(micro_model_dir)
    with pytest.raises(ValidationError) as error:
        model_version_register(name="hub-rm", path=hub_id, kind="reward")
    assert "not a reward model" in " ".join(error.value.message_dict["kind"])


@pytest.mark.parametrize("hub_id", ["gpt2", "relative/dir"])
@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_register_refuses_a_hub_id_missing_from_this_machines_cache(
    db, tmp_path, monkeypatch, hub_cache, hub_id, backend
):
    """Each worker would look it up on the hub (offline: it fails after a long wait, and every
    suggestion with it): refused, saying how to make it usable, and nothing is stored."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError) as error:
        model_version_register(name="hub", path=hub_id, backend=backend)
    message = " ".join(error.value.message_dict["path"])
    assert f"{hub_id} is neither a model folder nor a Hugging Face Hub model" in message
    assert "download it" in message and "absolute path" in message
    assert not ModelVersion.objects.exists()


def test_an_openai_version_names_no_model_of_this_machine(db, hub_cache):
    """A model served elsewhere is not looked for here."""
    openai = {"base_url": "http://server:8000/v1", "model": "m", "api_key_env": "SERVER_API_KEY"}
    version = model_version_register(
        name="served", path="", backend="openai", backend_options=openai, context_length=64
    )
    assert model_version_promote(version=version).is_active


def test_promotion_refuses_a_version_whose_model_is_gone(
    policy, tmp_path, micro_model_dir, hub_cache
):
    """The version's folder was removed (or its hub model dropped from the cache) since it was
    registered: promoted, every suggestion failed; the active version stays."""
    folder = shutil.copytree(micro_model_dir, tmp_path / "run-7")
    moved = model_version_register(name="run-7", path=str(folder))
    snapshot = hub_cache("org/dropped", micro_model_dir)
    dropped = model_version_register(name="dropped", path="org/dropped")
    shutil.rmtree(folder)
    shutil.rmtree(snapshot)
    for version, message in [
        (
            moved,
            f"run-7 cannot be promoted: its model folder {folder} is gone (no config.json there)",
        ),
        (dropped, "dropped cannot be promoted: org/dropped is neither a model folder nor"),
    ]:
        with pytest.raises(ValidationError) as error:
            model_version_promote(version=version)
        assert message in " ".join(error.value.messages)
        version.refresh_from_db()
        assert not version.is_active
    assert ModelVersion.objects.get(is_active=True) == policy


def test_ensure_default_registers_a_relative_sampler_model_by_its_absolute_path(
    db, settings, monkeypatch, micro_model_dir
):
    monkeypatch.chdir(micro_model_dir.parent)
    settings.SAMPLER_MODEL = micro_model_dir.name
    version = model_version_ensure_default()
    assert version.is_active and version.path == str(micro_model_dir.resolve())


def test_ensure_default_finds_a_free_name_when_the_numbered_one_is_taken(
    db, settings, micro_model_dir
):
    # Two versions hold the folder's name and the name "<name>-<count + 1>" (none is active).
    name = micro_model_dir.name
    openai = {"base_url": "http://server:8000/v1", "model": "m", "api_key_env": "SERVER_API_KEY"}
    for taken in (name, f"{name}-3"):
        model_version_register(
            name=taken, path="", backend="openai", backend_options=openai, context_length=64
        )
    settings.SAMPLER_MODEL = str(micro_model_dir)
    version = model_version_ensure_default()
    assert version.is_active and version.path == str(micro_model_dir)
    assert version.name not in {name, f"{name}-3"}


def test_ensure_default_takes_the_version_another_process_registered_at_the_same_moment(
    db, settings, monkeypatch, micro_model_dir
):
    """Two processes starting at once (the web server's start, a first suggestion) both see no
    active policy and register SAMPLER_MODEL: the second takes the first one's version."""
    settings.SAMPLER_MODEL = str(micro_model_dir)
    register = services.model_version_register

    def raced(**fields):
        ModelVersion.objects.create(name=fields["name"], path=fields["path"])  # the other one
        return register(**fields)

    monkeypatch.setattr(services, "model_version_register", raced)
    version = model_version_ensure_default()
    assert version.is_active and version.path == str(micro_model_dir)
    assert ModelVersion.objects.count() == 1


def _model_with_config(micro_model_dir, folder, **fields):
    """A copy of the micro model whose ``config.json`` states ``fields`` too."""
    shutil.copytree(micro_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | fields))
    return folder


def _positions(micro_model_dir) -> int:
    return json.loads((micro_model_dir / "config.json").read_text())["n_positions"]


def test_register_refuses_a_config_context_length_past_what_the_registry_records(
    db, tmp_path, micro_model_dir
):
    """Refused before, but as a context length the admin never gave ("Ensure this value is
    less than or equal to ..."): the message now names the config, and a context length given
    within the cap is taken."""
    model = _model_with_config(
        micro_model_dir, tmp_path / "long", n_positions=MAX_CONTEXT_LENGTH + 1
    )
    with pytest.raises(ValidationError) as error:
        model_version_register(name="long", path=str(model))
    message = " ".join(error.value.message_dict["context_length"])
    assert f"config.json states {MAX_CONTEXT_LENGTH + 1} tokens" in message
    assert "give context_length" in message
    version = model_version_register(name="long", path=str(model), context_length=4096)
    assert version.context_length == 4096


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_register_refuses_a_context_length_longer_than_the_local_models_config(
    db, micro_model_dir, backend
):
    """A model with learned positions (the micro model's GPT-2) fails on a prompt past its
    config's length: a version claiming more let such prompts through to the worker."""
    positions = _positions(micro_model_dir)
    with pytest.raises(ValidationError) as error:
        model_version_register(
            name="long", path=str(micro_model_dir), backend=backend, context_length=positions + 1
        )
    message = " ".join(error.value.message_dict["context_length"])
    assert f"at most {positions} tokens" in message
    assert not ModelVersion.objects.exists()
    version = model_version_register(
        name="long", path=str(micro_model_dir), backend=backend, context_length=positions
    )
    assert version.context_length == positions


def test_serving_update_refuses_a_context_length_longer_than_the_local_models_config(
    policy, micro_model_dir
):
    positions = _positions(micro_model_dir)
    with pytest.raises(ValidationError) as error:
        services.model_version_serving_update(version=policy, context_length=positions * 2)
    assert f"at most {positions} tokens" in " ".join(error.value.message_dict["context_length"])
    policy.refresh_from_db()
    assert policy.context_length == positions


def test_a_longer_context_is_taken_where_the_config_does_not_bound_it(
    db, tmp_path, micro_model_dir
):
    """A server of the directory (openai) and RoPE scaling may serve more than the config's
    positions: the given length stands."""
    positions = _positions(micro_model_dir)
    openai = {"base_url": "http://server:8000/v1", "model": "m", "api_key_env": "SERVER_API_KEY"}
    served = model_version_register(
        name="served",
        path=str(micro_model_dir),
        backend="openai",
        backend_options=openai,
        context_length=positions * 4,
    )
    scaled_model = _model_with_config(
        micro_model_dir, tmp_path / "scaled", rope_scaling={"rope_type": "yarn", "factor": 4.0}
    )
    scaled = model_version_register(
        name="scaled", path=str(scaled_model), context_length=positions * 4
    )
    assert served.context_length == scaled.context_length == positions * 4


def test_a_sampler_model_whose_tokenizer_has_no_chat_template_is_not_registered(
    db, settings, untemplated_model_dir
):
    settings.SAMPLER_MODEL = str(untemplated_model_dir)
    with pytest.raises(ValidationError, match="has no chat template"):
        model_version_ensure_default()
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize("registered", [False, True])
def test_the_default_policy_is_not_made_active_when_a_projects_max_new_tokens_overflows_it(
    db, settings, micro_model_dir, registered
):
    """A project saved while no policy was active was checked against no context; the default
    policy registered (or a version at its path activated) afterwards was not checked against
    the project, and every fill of its pool was refused. It is refused as a promotion is, by
    each door that makes it active, and nothing is left registered or active."""
    from django.core.management import call_command

    from ranking.projects.models import Project
    from ranking.projects.services import project_create
    from sampler.generation.services import NO_DEFAULT_POLICY, _default_policy

    settings.SAMPLER_MODEL = str(micro_model_dir)
    positions = _positions(micro_model_dir)
    earlier = (
        model_version_register(name="earlier", path=str(micro_model_dir)) if registered else None
    )
    project = project_create(
        name="Long", slug="long", sampling_params={"max_new_tokens": positions}
    )
    name = "earlier" if registered else micro_model_dir.name
    refusal = (
        f"{name} cannot be made the active policy: Project 'Long' (long) would sample from "
        f"{name} with max_new_tokens={positions}."
    )

    with pytest.raises(ValidationError) as error:
        model_version_ensure_default()
    assert refusal in " ".join(error.value.messages)
    assert "Lower the project's max_new_tokens first." in " ".join(error.value.messages)
    # The app still starts (make run, docker compose run this first): a warning, no error.
    out, err = io.StringIO(), io.StringIO()
    call_command("ensure_default_model", stdout=out, stderr=err)
    assert out.getvalue() == ""
    assert err.getvalue().startswith("Warning: no policy is active;")
    assert refusal in err.getvalue()
    with pytest.raises(ValidationError) as error:
        _default_policy()
    assert error.value.messages == [NO_DEFAULT_POLICY]
    assert not ModelVersion.objects.filter(is_active=True).exists()
    assert list(ModelVersion.objects.all()) == ([earlier] if registered else [])

    Project.objects.filter(pk=project.pk).update(sampling_params={"max_new_tokens": positions - 16})
    assert model_version_ensure_default().is_active


def test_the_default_policy_already_active_is_read_without_the_sampling_context_lock(
    db, settings, micro_model_dir, monkeypatch
):
    """Every suggestion asks for the default policy: with one active it took the lock that
    promotions and project saves hold while they check model folders, and waited on them."""
    from sampler.registry import services

    settings.SAMPLER_MODEL = str(micro_model_dir)
    active = model_version_ensure_default()

    def refuse() -> None:
        raise AssertionError("the sampling context lock was taken")

    monkeypatch.setattr(services, "sampling_context_lock", refuse)
    assert model_version_ensure_default() == active
