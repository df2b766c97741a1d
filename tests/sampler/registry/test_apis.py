"""The staff API for model versions' serving configuration: admins register and patch it,
trainers read versions without where they are served from."""

import html
import json
import re
import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from sampler.registry import services
from sampler.registry.models import ModelVersion
from tests.conftest import served_version

URL = "/api/model-versions/"
OPENAI = {"base_url": "http://vllm:8000/v1", "model": "policy", "api_key_env": "VLLM_API_KEY"}


def _post(client, data):
    return client.post(URL, json.dumps(data), content_type="application/json")


def _patch(client, version_id, data):
    return client.patch(f"{URL}{version_id}/", json.dumps(data), content_type="application/json")


def test_an_admin_registers_an_openai_version_with_its_context_length(admin_client_):
    response = _post(
        admin_client_,
        {"name": "served", "backend": "openai", "backend_options": OPENAI, "context_length": 4096},
    )
    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get(name="served")
    assert version.backend == "openai" and version.backend_options == OPENAI
    assert version.context_length == 4096 and not version.is_active
    assert response.json()["backend_options"] == OPENAI


@pytest.mark.parametrize(
    "name", ["../evil", ".hidden", "org/.hidden", "/absolute", "a/b/c", "org/", "back\\slash"]
)
def test_a_name_that_climbs_out_of_a_folder_or_nests_is_refused(admin_client_, name):
    """A name is a folder's or a hub id's (org/name), as the trained versions' default names
    take it; the API refused nothing of the kind (``../evil`` was registered)."""
    body = {"name": name, "backend": "openai", "backend_options": OPENAI, "context_length": 512}
    response = _post(admin_client_, body)
    assert response.status_code == 400
    assert response.json() == {"name": [services.MODEL_VERSION_NAME_RULE]}
    assert not ModelVersion.objects.filter(name=name).exists()
    hub_id = _post(admin_client_, {**body, "name": "org/model-1.5"})
    assert hub_id.status_code == 201, hub_id.content


def test_a_parent_that_names_no_version_is_a_400_on_the_field(admin_client_, policy):
    body = {"name": "child", "backend": "openai", "backend_options": OPENAI, "context_length": 512}
    response = _post(admin_client_, {**body, "parent_id": policy.pk + 1000})
    assert response.status_code == 400
    assert response.json() == {"parent_id": ["No model version with that id."]}
    assert not ModelVersion.objects.filter(name="child").exists()
    created = _post(admin_client_, {**body, "parent_id": policy.pk})
    assert created.status_code == 201, created.content
    assert ModelVersion.objects.get(name="child").parent_id == policy.pk


def test_a_local_version_records_its_context_and_vllm_caps_it(admin_client_, micro_model_dir):
    response = _post(
        admin_client_,
        {
            "name": "engine",
            "path": str(micro_model_dir),
            "backend": "vllm",
            "backend_options": {"max_model_len": 128},
        },
    )
    assert response.status_code == 201, response.content
    # The micro model's config says 256; the engine serves 128.
    assert ModelVersion.objects.get(name="engine").context_length == 128


def test_bad_serving_configs_are_400_with_the_field_and_nothing_is_stored(
    admin_client_, micro_model_dir
):
    cases = [
        ({"name": "a", "backend": "openai", "backend_options": OPENAI}, "context_length"),
        (
            {"name": "a", "backend": "openai", "context_length": 9,
             "backend_options": {**OPENAI, "api_key_env": "sk-live-123"}},
            "backend_options",
        ),
        ({"name": "a", "backend": "vllm"}, "path"),
        ({"name": "a", "backend": "tgi", "path": str(micro_model_dir)}, "backend"),
        ({"name": 5, "path": str(micro_model_dir)}, "name"),
        ({"name": "a", "path": str(micro_model_dir), "context_length": "256"}, "context_length"),
        ({"name": "a", "path": str(micro_model_dir), "is_active": True}, "detail"),
        ({"name": "a", "path": "/no/such/model"}, "path"),
        # A JSON column refuses these inside values too: a 400, not the database's error.
        ({"name": "a", "backend": "openai", "context_length": 9,
          "backend_options": {**OPENAI, "model": "m\ud800"}}, "backend_options"),
        ({"name": "a", "backend": "openai", "context_length": 9,
          "backend_options": {**OPENAI, "base_url": "http://x/v1\x00"}}, "backend_options"),
        # Values of another type than the option takes (lists, objects): refused, not a 500.
        ({"name": "a", "backend": "vllm", "path": str(micro_model_dir),
          "backend_options": {"dtype": []}}, "backend_options"),
        ({"name": "a", "backend": "openai", "context_length": 9,
          "backend_options": {**OPENAI, "api_key_env": ["KEY"]}}, "backend_options"),
        ({"name": "a", "backend": "openai", "context_length": 9,
          "backend_options": {**OPENAI, "api_key_env": {"KEY": 1}}}, "backend_options"),
        # A name is one line (`manage.py promote NAME`, log lines): no control characters.
        ({"name": "two\nlines", "path": str(micro_model_dir)}, "name"),
        ({"name": "tab\there", "path": str(micro_model_dir)}, "name"),
        ({"name": "bell\x07", "path": str(micro_model_dir)}, "name"),
        ({"name": "line\u2028separator", "path": str(micro_model_dir)}, "name"),
        ({"name": "", "path": str(micro_model_dir)}, "name"),
        # Above what the column holds: a range error, not the database's.
        ({"name": "a", "backend": "openai", "backend_options": OPENAI,
          "context_length": 2**31}, "context_length"),
        ({"name": "a", "path": str(micro_model_dir), "parent_id": -1}, "parent_id"),
        ({"name": "a", "path": str(micro_model_dir), "parent_id": 2**70}, "parent_id"),
    ]  # fmt: skip
    for data, field in cases:
        response = _post(admin_client_, data)
        assert response.status_code == 400, (data, response.content)
        assert response["Content-Type"].startswith("application/json")
        assert field in response.json(), (data, response.json())
    assert not ModelVersion.objects.exists()


def test_an_admin_patches_the_serving_config_validated_as_at_registration(admin_client_, policy):
    response = _patch(
        admin_client_,
        policy.pk,
        {"backend": "openai", "backend_options": OPENAI, "context_length": 2048},
    )
    assert response.status_code == 200, response.content
    policy.refresh_from_db()
    assert (policy.backend, policy.context_length) == ("openai", 2048)
    # Back to vLLM on the same directory: options checked for vllm, context re-read and capped.
    response = _patch(
        admin_client_, policy.pk, {"backend": "vllm", "backend_options": {"max_model_len": 200}}
    )
    assert response.status_code == 200, response.content
    policy.refresh_from_db()
    assert (policy.backend, policy.backend_options, policy.context_length) == (
        "vllm",
        {"max_model_len": 200},
        200,
    )
    refused = _patch(admin_client_, policy.pk, {"backend_options": {"base_url": "http://x/v1"}})
    assert refused.status_code == 400 and "backend_options" in refused.json()
    renamed = _patch(admin_client_, policy.pk, {"name": "other"})
    assert renamed.status_code == 400
    policy.refresh_from_db()
    assert policy.backend_options == {"max_model_len": 200} and policy.name == "micro"
    assert _patch(admin_client_, 999999, {"backend": "vllm"}).status_code == 404


def test_trainers_read_versions_without_paths_and_cannot_change_them(trainer_client, policy):
    listed = trainer_client.get(URL)
    assert listed.status_code == 200
    [row] = listed.json()
    assert row["name"] == "micro" and row["backend"] == "transformers"
    assert "path" not in row and "backend_options" not in row
    detail = trainer_client.get(f"{URL}{policy.pk}/").json()
    assert "path" not in detail and "backend_options" not in detail
    assert _post(trainer_client, {"name": "x", "path": policy.path}).status_code == 403
    assert _patch(trainer_client, policy.pk, {"backend": "vllm"}).status_code == 403
    policy.refresh_from_db()
    assert policy.backend == "transformers" and ModelVersion.objects.count() == 1


def test_the_admin_form_refuses_bad_options(admin_client_, policy):
    response = admin_client_.post(
        f"/admin/sampler/modelversion/{policy.pk}/change/",
        {
            "name": policy.name,
            "kind": "policy",
            "source": "registered",
            "path": "",
            "backend": "openai",
            "backend_options": json.dumps({"base_url": "http://x/v1", "model": "m"}),
            "metrics": "{}",
            "description": "",
        },
    )
    assert response.status_code == 200  # the form again, with its errors
    assert b"context length" in response.content
    policy.refresh_from_db()
    assert policy.backend == "transformers"


def test_a_model_of_the_other_kind_is_refused_by_what_its_config_names(
    admin_client_, policy, tmp_path
):
    """A reward model writes no text (a sequence classifier: one score), and a language model
    scores nothing: registered under the wrong kind, each is refused before it could be
    promoted."""
    from tests.ranking.conftest import reward_version_untrained

    reward = reward_version_untrained(policy.path, tmp_path / "rm", seed=0)
    as_policy = _post(admin_client_, {"name": "rm-as-policy", "path": reward.path})
    assert as_policy.status_code == 400
    assert "holds a reward model" in json.dumps(as_policy.json()["kind"])
    as_reward = _post(admin_client_, {"name": "lm-as-rm", "path": policy.path, "kind": "reward"})
    assert as_reward.status_code == 400
    assert "not a reward model" in json.dumps(as_reward.json()["kind"])
    assert not ModelVersion.objects.filter(name__in=["rm-as-policy", "lm-as-rm"]).exists()
    # Nor can a version be pointed at the other kind's directory afterwards.
    moved = _patch(admin_client_, policy.pk, {"path": reward.path})
    assert moved.status_code == 400
    assert "holds a reward model" in json.dumps(moved.json()["kind"])
    policy.refresh_from_db()
    assert policy.path != reward.path


def test_a_path_that_names_no_model_on_this_machine_is_a_400_on_the_path(
    admin_client_, policy, hub_cache, micro_model_dir, tmp_path
):
    """Registered, then promoted, it failed every suggestion after a long offline hub lookup."""
    response = _post(
        admin_client_, {"name": "bad3", "backend": "transformers", "path": "relative/dir"}
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    message = " ".join(response.json()["path"])
    assert "relative/dir is neither a model folder nor a Hugging Face Hub model" in message
    assert not ModelVersion.objects.filter(name="bad3").exists()
    hub_cache("relative/dir", micro_model_dir)
    response = _post(
        admin_client_, {"name": "bad3", "backend": "transformers", "path": "relative/dir"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["context_length"] is not None


def test_the_promote_button_and_command_refuse_a_version_whose_folder_is_gone(
    admin_client_, policy, micro_model_dir, tmp_path
):
    folder = shutil.copytree(micro_model_dir, tmp_path / "run-7")
    version = services.model_version_register(name="run-7", path=str(folder))
    shutil.rmtree(folder)
    page = admin_client_.post(
        reverse("sampler:version-promote", kwargs={"version_id": version.pk}),
        {"next": reverse("sampler:models")},
        follow=True,
    )
    assert "run-7 cannot be promoted" in page.content.decode()
    assert "is now the active" not in page.content.decode()
    with pytest.raises(CommandError, match="run-7 cannot be promoted: its model folder"):
        call_command("promote", "run-7", stdout=StringIO())
    version.refresh_from_db()
    policy.refresh_from_db()
    assert not version.is_active and policy.is_active


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_every_promotion_refuses_a_version_whose_tokenizer_has_no_chat_template(
    admin_client_, policy, settings, untemplated_model_dir, backend
):
    """Registration refuses such a tokenizer, but a version registered before it did (or whose
    template was removed since) was promoted, and every chat asked of it failed. The Promote
    button, ``manage.py promote`` and the default policy's activation refuse it; the active
    policy stays."""
    version = ModelVersion.objects.create(
        name="plain", path=str(untemplated_model_dir), backend=backend, context_length=64
    )
    refusal = (
        f"plain cannot be promoted: The tokenizer at {untemplated_model_dir} has no chat "
        "template: every chat it was asked to write would fail."
    )
    page = admin_client_.post(
        reverse("sampler:version-promote", kwargs={"version_id": version.pk}),
        {"next": reverse("sampler:models")},
        follow=True,
    )
    assert refusal in html.unescape(page.content.decode())
    assert "is now the active" not in page.content.decode()
    with pytest.raises(CommandError) as raised:
        call_command("promote", "plain", stdout=StringIO())
    assert refusal in str(raised.value)
    version.refresh_from_db()
    policy.refresh_from_db()
    assert not version.is_active and policy.is_active

    # With no policy active, SAMPLER_MODEL's folder names the version: it is not activated.
    ModelVersion.objects.filter(pk=policy.pk).delete()
    settings.SAMPLER_MODEL = str(untemplated_model_dir)
    with pytest.raises(CommandError, match="plain cannot be made the active policy: The"):
        call_command("ensure_default_model", stdout=StringIO())
    assert not ModelVersion.objects.filter(is_active=True).exists()


def test_a_version_whose_folder_is_gone_still_takes_other_serving_changes(
    admin_client_, gone_folder, tmp_path
):
    """As in the admin: only a changed path or backend must name a model found here."""
    response = _patch(admin_client_, gone_folder.pk, {"context_length": 32})
    assert response.status_code == 200, response.content
    gone_folder.refresh_from_db()
    assert gone_folder.context_length == 32
    missing = str(tmp_path / "nowhere")
    for change in ({"path": missing}, {"backend": "vllm"}):
        response = _patch(admin_client_, gone_folder.pk, change)
        assert response.status_code == 400, (change, response.content)
    gone_folder.refresh_from_db()
    assert (gone_folder.path, gone_folder.backend) != (missing, "vllm")


SHORT_CONTEXT = (
    "short: max_new_tokens=256 leaves less than 16 tokens for the prompt in this model's "
    "256-token context; ask for at most 240."
)


def test_promoting_a_policy_whose_context_a_projects_max_new_tokens_overflows_is_refused(
    admin_client_,
):
    """The project was checked against the active policy when it was saved, but promoting
    another was not checked against it: after it, every fill of the project's pool was refused."""
    from ranking.projects.models import Project
    from ranking.projects.services import project_create

    wide = served_version("wide", 4096, active=True)
    short = served_version("short", 256)
    project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 256})
    # A project with a policy of its own does not follow the promotion; one done samples no more.
    project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 256}, policies=[(wide, 1.0)]
    )
    project_create(name="Old", slug="old", sampling_params={"max_new_tokens": 256}, status="done")
    refusal = (
        "short cannot be promoted: Project 'Long' (long) would sample from short with "
        f"max_new_tokens=256. {SHORT_CONTEXT} Lower the project's max_new_tokens first."
    )

    page = admin_client_.post(
        reverse("sampler:version-promote", kwargs={"version_id": short.pk}),
        {"next": reverse("sampler:models")},
        follow=True,
    )
    assert refusal in html.unescape(page.content.decode())
    with pytest.raises(CommandError) as raised:
        call_command("promote", "short", stdout=StringIO())
    assert str(raised.value) == refusal
    short.refresh_from_db()
    wide.refresh_from_db()
    assert not short.is_active and wide.is_active

    Project.objects.filter(slug="long").update(sampling_params={"max_new_tokens": 240})
    assert services.model_version_promote(version=short).is_active


def test_a_context_length_a_projects_max_new_tokens_overflows_is_a_400_naming_the_project(
    admin_client_,
):
    from ranking.projects.services import project_create

    wide = served_version("wide", 4096, active=True)
    named = served_version("named", 4096)
    project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 256})
    project_create(
        name="Own", slug="own", sampling_params={"max_new_tokens": 200}, policies=[(named, 1.0)]
    )

    refused = _patch(admin_client_, wide.pk, {"context_length": 256})
    assert refused.status_code == 400
    assert refused.json() == {
        "context_length": [
            "Project 'Long' (long) would sample from wide with max_new_tokens=256. "
            + SHORT_CONTEXT.replace("short:", "wide:")
            + " Lower the project's max_new_tokens first."
        ]
    }
    own = _patch(admin_client_, named.pk, {"context_length": 200})
    assert own.status_code == 400
    assert (
        "Project 'Own' (own) would sample from named with max_new_tokens=200"
        in (own.json()["context_length"][0])
    )
    wide.refresh_from_db()
    named.refresh_from_db()
    assert wide.context_length == named.context_length == 4096
    assert _patch(admin_client_, named.pk, {"context_length": 216}).status_code == 200
    # The project that names its own policy does not sample from the active one.
    assert _patch(admin_client_, wide.pk, {"context_length": 272}).status_code == 200


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_a_model_whose_tokenizer_has_no_chat_template_is_refused_at_registration(
    admin_client_, untemplated_model_dir, micro_model_dir, tmp_path, backend
):
    """Registered (201), it failed every task prepared from it, at the worker."""
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text('{"model_type": "gpt2"}')
    for folder in (untemplated_model_dir, bare):
        response = _post(admin_client_, {"name": "plain", "backend": backend, "path": str(folder)})
        assert response.status_code == 400
        assert response["Content-Type"].startswith("application/json")
        assert f"The tokenizer at {folder} has no chat template" in " ".join(
            response.json()["path"]
        )
    assert not ModelVersion.objects.filter(name="plain").exists()

    templated = shutil.copytree(untemplated_model_dir, tmp_path / "templated")
    shutil.copy(micro_model_dir / "chat_template.jinja", templated / "chat_template.jinja")
    response = _post(admin_client_, {"name": "plain", "backend": backend, "path": str(templated)})
    assert response.status_code == 201, response.content


def _no_reply(length: int) -> str:
    return (
        f"This model's {length}-token context is too short for any reply: a prompt keeps at "
        "least 16 tokens. Give a policy a context_length of more than 16."
    )


@pytest.mark.parametrize("length", [8, 16])
def test_a_policy_context_too_short_for_any_reply_is_refused_by_registration_and_patch(
    admin_client_, length
):
    """Accepted, it had every job sampled from the version refused (Try the model, every task
    of a project that names no max_new_tokens, red-teaming), even as the active policy."""
    active = served_version("wide", 4096, active=True)
    idle = served_version("idle", 4096)
    registered = _post(
        admin_client_,
        {"name": "tiny", "backend": "openai", "backend_options": OPENAI, "context_length": length},
    )
    patched = [_patch(admin_client_, pk, {"context_length": length}) for pk in (active.pk, idle.pk)]

    for response in [registered, *patched]:
        assert response.status_code == 400
        assert response.json() == {"context_length": [_no_reply(length)]}
    assert not ModelVersion.objects.filter(name="tiny").exists()
    assert set(ModelVersion.objects.values_list("context_length", flat=True)) == {4096}
    # Room for a prompt and a one-token reply.
    assert _patch(admin_client_, idle.pk, {"context_length": 17}).status_code == 200


def test_the_compare_help_is_short_with_the_details_folded(admin_client_):
    """A new admin reads one sentence; how prompts, judges and votes are chosen is behind a
    <details> list."""
    page = admin_client_.get("/models/").content.decode()
    short = re.search(r'<p class="muted" id="compare-help">(.*?)</p>', page, re.S)
    assert short and len(short.group(1).split()) <= 30
    details = re.search(r'<details class="muted compare-details">(.*?)</details>', page, re.S)
    assert details and details.group(1).count("<li>") >= 4
    assert "largest fraction every" in details.group(1)
