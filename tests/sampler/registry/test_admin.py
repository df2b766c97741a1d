"""The Django admin's model version pages refuse what the registry services refuse."""

import json

import pytest
from django.urls import reverse

from ranking.projects.services import project_create
from sampler.comparisons.services import independent_judges, optimised_against
from sampler.models import ModelVersion
from sampler.registry import admin as admin_module
from sampler.registry.selectors import model_version_tree
from sampler.registry.services import model_version_promote

pytestmark = pytest.mark.django_db


def _change_form(client, version: ModelVersion) -> dict:
    """What the admin's change page posts back unchanged."""
    page = client.get(reverse("admin:sampler_modelversion_change", args=[version.pk]))
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in form.fields}
    return {name: "" if value is None else value for name, value in data.items()}


# Versions' models: hub ids in a Hugging Face cache of each test's own (no architectures named,
# so any kind), which promotion and the admin's form find.
HUB_IDS = ("served", "other", "p", "spare", "base", "child")


@pytest.fixture(autouse=True)
def hub_models(hub_cache, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"n_positions": 64}')
    (folder / "chat_template.jinja").write_text("{{ messages }}")
    for name in HUB_IDS:
        hub_cache(f"hub/{name}", folder)


def _version(name: str, kind: str, *, active: bool = True) -> ModelVersion:
    assert name in HUB_IDS
    return ModelVersion.objects.create(name=name, path=f"hub/{name}", kind=kind, is_active=active)


def _project_policy(name: str, kind: str) -> ModelVersion:
    version = _version(name, kind, active=False)
    project_create(name="Safety", slug="safety", policies=[(version, 1)])
    return version


POLICY, REWARD = ModelVersion.Kind.POLICY, ModelVersion.Kind.REWARD


@pytest.mark.parametrize(
    "make, stored, kind, message",
    [
        # The site was left with no active policy.
        (_version, POLICY, REWARD, "p is the active policy: it keeps its kind"),
        # With a policy active too: the one-active-per-kind constraint answered a 500.
        (_version, REWARD, POLICY, "p is the active reward: it keeps its kind"),
        (_project_policy, POLICY, REWARD, "p is a policy of a project: it stays a policy"),
    ],
)
def test_the_admin_keeps_the_kind_of_an_active_version_or_a_projects_policy(
    admin_client_, make, stored, kind, message
):
    if kind == POLICY:
        _version("served", POLICY)
    version = make("p", stored)
    data = _change_form(admin_client_, version) | {"kind": kind}

    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[version.pk]), data)

    assert page.status_code == 200
    assert message in page.content.decode()
    version.refresh_from_db()
    assert version.kind == stored


def test_saving_a_version_in_the_admin_keeps_a_promotion_made_meanwhile(admin_client_, monkeypatch):
    """The admin saves the whole row it read: a promotion between that read and the save (an
    admin promoting it on the Models page) was undone, and no policy was active."""
    served = _version("served", POLICY)
    other = _version("other", POLICY, active=False)
    data = _change_form(admin_client_, other) | {"description": "Edited."}
    clean = admin_module.ModelVersionAdminForm.clean

    def promoted_meanwhile(form):
        data = clean(form)
        model_version_promote(version=other)
        return data

    monkeypatch.setattr(admin_module.ModelVersionAdminForm, "clean", promoted_meanwhile)
    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[other.pk]), data)

    assert page.status_code == 302
    other.refresh_from_db()
    served.refresh_from_db()
    assert other.description == "Edited."
    assert other.is_active and other.activated_at is not None and not served.is_active


def test_the_admin_cannot_delete_an_active_version(admin_client_):
    """Deleting the active policy left none: the next suggestion quietly registered and served
    SAMPLER_MODEL instead. Promote another first; an inactive version can go."""
    served = _version("served", POLICY)
    spare = _version("spare", POLICY, active=False)
    delete = admin_client_.post(
        reverse("admin:sampler_modelversion_delete", args=[served.pk]), {"post": "yes"}
    )
    assert delete.status_code == 403
    bulk = admin_client_.post(
        reverse("admin:sampler_modelversion_changelist"),
        {"action": "delete_selected", "_selected_action": [served.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 403)
    assert ModelVersion.objects.filter(pk=served.pk, is_active=True).exists()
    gone = admin_client_.post(
        reverse("admin:sampler_modelversion_delete", args=[spare.pk]), {"post": "yes"}
    )
    assert gone.status_code == 302 and not ModelVersion.objects.filter(pk=spare.pk).exists()


def test_the_admin_refuses_a_parent_that_would_make_a_loop(admin_client_):
    """A version under itself (or under its own child) has no root: it vanished from the
    Models page's tree, Promote button and all."""
    base = _version("base", POLICY, active=False)
    child = ModelVersion.objects.create(name="child", path="hub/child", parent=base)
    for version, parent in ((base, base), (base, child)):
        data = _change_form(admin_client_, version) | {"parent": parent.pk}
        page = admin_client_.post(
            reverse("admin:sampler_modelversion_change", args=[version.pk]), data
        )
        assert page.status_code == 200 and "its own parent" in page.content.decode()
    base.refresh_from_db()
    assert base.parent_id is None
    assert [row.version for row in model_version_tree()] == [base, child]


def _promoted_after_the_page_reads_it(monkeypatch, version) -> None:
    """The admin page's read of ``version`` is followed by its promotion (on the Models page,
    say), before the page acts on what it read."""
    get_object = admin_module.ModelVersionAdmin.get_object

    def promoted_after_the_read(model_admin, request, object_id, from_field=None):
        loaded = get_object(model_admin, request, object_id, from_field)
        model_version_promote(version=ModelVersion.objects.get(pk=version.pk))
        return loaded

    monkeypatch.setattr(admin_module.ModelVersionAdmin, "get_object", promoted_after_the_read)


def test_the_admin_checks_the_kind_against_the_row_as_it_is_when_saved(admin_client_, monkeypatch):
    """The check read the row the request loaded: a version promoted after that read (on the
    Models page) became a reward model, and no policy was active."""
    version = _version("p", POLICY, active=False)
    data = _change_form(admin_client_, version) | {"kind": REWARD}
    _promoted_after_the_page_reads_it(monkeypatch, version)
    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[version.pk]), data)

    assert page.status_code == 200
    assert "p is the active policy: it keeps its kind" in page.content.decode()
    version.refresh_from_db()
    assert version.kind == POLICY and version.is_active


def test_the_admin_cannot_delete_a_version_promoted_after_the_page_read_it(
    admin_client_, monkeypatch
):
    """The delete page checked the row it loaded: a version promoted after that read was
    deleted, and no policy was active."""
    served = _version("served", POLICY)
    version = _version("p", POLICY, active=False)
    _promoted_after_the_page_reads_it(monkeypatch, version)
    page = admin_client_.post(
        reverse("admin:sampler_modelversion_delete", args=[version.pk]), {"post": "yes"}
    )

    assert page.status_code == 403
    # Refused, and the request's transaction rolled back (the promotion made within it too).
    assert ModelVersion.objects.filter(pk__in=[served.pk, version.pk]).count() == 2


def test_a_refused_bulk_delete_leaves_no_history_entry_saying_it_deleted(
    admin_client_, monkeypatch
):
    from django.contrib.admin.models import DELETION, LogEntry

    _version("served", POLICY)
    version = _version("p", POLICY, active=False)
    log_deletions = admin_module.ModelVersionAdmin.log_deletions

    def promoted_meanwhile(model_admin, request, queryset):
        log_deletions(model_admin, request, queryset)
        model_version_promote(version=ModelVersion.objects.get(pk=version.pk))

    monkeypatch.setattr(admin_module.ModelVersionAdmin, "log_deletions", promoted_meanwhile)
    page = admin_client_.post(
        reverse("admin:sampler_modelversion_changelist"),
        {"action": "delete_selected", "_selected_action": [version.pk], "post": "yes"},
    )

    assert page.status_code == 403
    assert ModelVersion.objects.filter(pk=version.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION, object_id=str(version.pk)).exists()


def test_a_version_whose_folder_is_gone_still_saves_its_other_fields_in_the_admin(
    admin_client_, gone_folder
):
    """Its model being missing refused every save: its notes could not even be changed."""
    data = _change_form(admin_client_, gone_folder) | {"description": "Folder lost in the move."}

    page = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[gone_folder.pk]), data
    )

    assert page.status_code == 302
    gone_folder.refresh_from_db()
    assert gone_folder.description == "Folder lost in the move."


def test_the_admin_still_refuses_a_changed_path_to_a_missing_model(
    admin_client_, gone_folder, tmp_path
):
    missing = str(tmp_path / "nowhere")
    data = _change_form(admin_client_, gone_folder) | {"path": missing}

    page = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[gone_folder.pk]), data
    )

    assert page.status_code == 200
    assert "is not a model directory" in page.content.decode()
    gone_folder.refresh_from_db()
    assert gone_folder.path != missing


def test_the_admin_refuses_a_context_length_a_projects_max_new_tokens_has_no_room_in(
    admin_client_,
):
    served = _version("served", POLICY)
    ModelVersion.objects.filter(pk=served.pk).update(context_length=64)
    project_create(name="Long", slug="long", sampling_params={"max_new_tokens": 40})
    url = reverse("admin:sampler_modelversion_change", args=[served.pk])
    data = _change_form(admin_client_, served)

    page = admin_client_.post(url, data | {"context_length": "48"})

    assert page.status_code == 200
    text = page.content.decode()
    assert "Project &#x27;Long&#x27; (long) would sample from served with max_new_tokens=40" in text
    assert "ask for at most 32." in text
    served.refresh_from_db()
    assert served.context_length == 64
    assert admin_client_.post(url, data | {"description": "Edited."}).status_code == 302
    assert admin_client_.post(url, data | {"context_length": "56"}).status_code == 302
    served.refresh_from_db()
    assert served.context_length == 56


def test_the_admin_refuses_a_path_whose_tokenizer_has_no_chat_template(
    admin_client_, gone_folder, untemplated_model_dir
):
    data = _change_form(admin_client_, gone_folder) | {"path": str(untemplated_model_dir)}

    page = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[gone_folder.pk]), data
    )

    assert page.status_code == 200
    assert f"The tokenizer at {untemplated_model_dir} has no chat template" in page.content.decode()
    gone_folder.refresh_from_db()
    assert gone_folder.path != str(untemplated_model_dir)


def test_the_admin_takes_the_sampling_context_lock_only_for_a_change_that_bears_on_projects(
    admin_client_, monkeypatch
):
    """Every save of the admin's form took the lock and held it while it read model folders,
    so project saves and promotions waited on a new version or a description's edit."""
    taken = []
    monkeypatch.setattr(admin_module, "sampling_context_lock", lambda: taken.append(True))
    version = _version("other", POLICY, active=False)
    url = reverse("admin:sampler_modelversion_change", args=[version.pk])
    unchanged = _change_form(admin_client_, version)

    edited = unchanged | {"description": "Edited."}
    assert admin_client_.post(url, edited).status_code == 302
    assert taken == []
    assert admin_client_.post(url, edited | {"context_length": "32"}).status_code == 302
    assert taken == [True]
    version.refresh_from_db()
    assert (version.description, version.context_length) == ("Edited.", 32)


def test_renaming_a_reward_model_in_the_admin_keeps_the_policies_optimised_against_it(
    admin_client_,
):
    """A PPO policy names the reward model it was optimised against in its metrics, by name:
    a rename left it naming the old one, and comparisons offered that reward model as an
    independent judge of the policy it had trained."""
    proxy = _version("spare", REWARD, active=False)
    judge = _version("other", REWARD)
    sft = _version("base", POLICY)
    ppo = ModelVersion.objects.create(
        name="child",
        path="hub/child",
        parent=sft,
        metrics={"reward_version": "spare", "loss/policy": 0.5},
    )
    # Names are one in any letter case: this one names it too.
    typed = ModelVersion.objects.create(
        name="typed", path="hub/child", metrics={"reward_version": "SPARE"}
    )
    data = _change_form(admin_client_, proxy) | {"name": "rm-proxy"}

    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[proxy.pk]), data)

    assert page.status_code == 302
    ppo.refresh_from_db()
    typed.refresh_from_db()
    assert ppo.metrics == {"reward_version": "rm-proxy", "loss/policy": 0.5}
    assert typed.metrics == {"reward_version": "rm-proxy"}
    assert optimised_against(ppo) == {"rm-proxy"}
    assert independent_judges(version_a=ppo, version_b=sft) == [judge]


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        # The Models page and comparisons read an object: a server error on both.
        (
            "[0.5]",
            'Metrics must be a JSON object of names and values, such as {"eval/kl": 0.12},'
            " not a list.",
        ),
        (
            '"good"',
            'Metrics must be a JSON object of names and values, such as {"eval/kl": 0.12},'
            " not text.",
        ),
        # Shown as a number on the Models page.
        ('{"eval/kl": "low"}', "eval/kl must be a number."),
        ('{"accuracy/eval": true}', "accuracy/eval must be a number."),
        ('{"eval/kl": NaN}', "Metrics cannot hold NaN, Infinity or numbers too large to store."),
        (
            '{"loss/eval": 1e999}',
            "Metrics cannot hold NaN, Infinity or numbers too large to store.",
        ),
        (
            '{"eval/kl": 1' + "0" * 400 + "}",
            "Metrics cannot hold NaN, Infinity or numbers too large to store.",
        ),
        # Counts on the Models page.
        ('{"data": [1, 2]}', 'data must be an object of counts, such as {"prompts/train": 100}.'),
        (
            '{"data": {"prompts/train": "many", "pairs/train": -1}}',
            "data: prompts/train must be a whole number, 0 or more. "
            "data: pairs/train must be a whole number, 0 or more.",
        ),
        (
            '{"stopped_early": ["kl"]}',
            "stopped_early must be text (why training stopped early), or null.",
        ),
        # What comparisons read to keep a reward model from judging a policy trained on it.
        (
            '{"reward_version": 3}',
            "reward_version must be the name of the reward model the "
            "policy was optimised against, as text.",
        ),
        (
            '{"data_half": "odd"}',
            "data_half must be one of all, first, second (the half of the "
            "rankings a reward model was trained on).",
        ),
    ],
)
def test_the_admin_refuses_metrics_that_what_reads_them_cannot_read(
    admin_client_, metrics, message
):
    version = _version("served", POLICY, active=False)
    data = _change_form(admin_client_, version) | {"metrics": metrics}

    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[version.pk]), data)

    assert page.status_code == 200
    assert page.context["adminform"].form.errors == {"metrics": [message]}
    version.refresh_from_db()
    assert version.metrics == {}


def test_metrics_the_admin_saves_are_shown_and_read_by_comparisons(admin_client_):
    judge = _version("other", REWARD)
    proxy = _version("spare", REWARD, active=False)
    version = _version("served", POLICY, active=False)
    metrics = {
        "eval/kl": 2,
        "data": {"prompts/train": 12.0, "note": "any"},
        "stopped_early": "KL past its limit",
        "reward_version": "spare",
        "data_half": "first",
        "anything else": [None, {"x": "y"}],
    }
    data = _change_form(admin_client_, version) | {"metrics": json.dumps(metrics)}

    saved = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[version.pk]), data
    )

    assert saved.status_code == 302
    version.refresh_from_db()
    assert version.metrics == metrics
    page = admin_client_.get(reverse("sampler:models"))
    assert page.status_code == 200
    assert "KL past its limit" in page.content.decode()
    assert optimised_against(version) == {"spare"}
    assert independent_judges(version_a=version, version_b=proxy) == [judge]


def test_metrics_left_empty_in_the_admin_are_none(admin_client_):
    version = ModelVersion.objects.create(
        name="served", path="hub/served", metrics={"eval/kl": 1.0}
    )
    data = _change_form(admin_client_, version) | {"metrics": ""}

    saved = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[version.pk]), data
    )

    assert saved.status_code == 302
    version.refresh_from_db()
    assert version.metrics == {}


def test_the_admin_refuses_a_policy_context_too_short_for_any_reply(admin_client_):
    version = _version("served", POLICY, active=False)
    data = _change_form(admin_client_, version) | {"context_length": "8"}

    page = admin_client_.post(reverse("admin:sampler_modelversion_change", args=[version.pk]), data)

    assert page.status_code == 200
    assert page.context["adminform"].form.errors == {
        "context_length": [
            "This model's 8-token context is too short for any reply: a prompt keeps at least 16 "
            "tokens. Give a policy a context_length of more than 16."
        ]
    }
    version.refresh_from_db()
    assert version.context_length != 8


def test_a_ppo_policy_whose_run_did_not_stop_early_still_saves_in_the_admin(admin_client_):
    # A PPO run that was not stopped early records ``stopped_early`` as null
    # (sampler/training/ppo.py), and its version keeps that: the metrics posted back unchanged
    # are not refused, so its other fields can still be edited.
    metrics = {"steps": 12, "total_steps": 12, "stopped_early": None, "value_init": "zeros"}
    version = ModelVersion.objects.create(name="served", path="hub/served", metrics=metrics)
    data = _change_form(admin_client_, version) | {"description": "Edited."}

    saved = admin_client_.post(
        reverse("admin:sampler_modelversion_change", args=[version.pk]), data
    )

    assert saved.status_code == 302, saved.context["adminform"].form.errors
    version.refresh_from_db()
    assert version.description == "Edited."
    assert version.metrics == metrics
