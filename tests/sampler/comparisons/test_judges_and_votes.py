"""Independent judges for comparisons, side-by-side votes and Bradley-Terry ratings."""

import math
import random

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from ranking.exports.filters import ExportFilters
from sampler.comparisons.models import ModelComparison, SideBySide, SideBySideVote
from sampler.comparisons.ratings import ELO_BASE, ELO_SCALE, bradley_terry
from sampler.comparisons.selectors import side_by_side_next, version_ratings, vote_tallies
from sampler.comparisons.services import (
    model_comparison_create,
    optimised_against,
    side_by_side_order,
    side_by_side_vote,
)
from sampler.generation.params import context_room_error
from sampler.registry.models import ModelVersion
from tests.ranking.conftest import conversation_in_split

pytestmark = pytest.mark.django_db


@pytest.fixture
def lineage(tmp_path, trainer):
    """sft -> ppo (optimised against rm-proxy); rm-judge trained on the other half; a
    held-out prompt to compare them on."""
    conversation_in_split(trainer)
    for name in ("sft", "ppo", "rm-proxy", "rm-judge"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    sft = ModelVersion.objects.create(name="sft", path=str(tmp_path / "sft"))
    proxy = ModelVersion.objects.create(
        name="rm-proxy",
        kind="reward",
        path=str(tmp_path / "rm-proxy"),
        metrics={"data_half": "first"},
        is_active=True,
    )
    judge = ModelVersion.objects.create(
        name="rm-judge",
        kind="reward",
        path=str(tmp_path / "rm-judge"),
        metrics={"data_half": "second"},
    )
    ppo = ModelVersion.objects.create(
        name="ppo", path=str(tmp_path / "ppo"), parent=sft, metrics={"reward_version": "rm-proxy"}
    )
    return sft, ppo, proxy, judge


def test_the_reward_model_a_policy_was_optimised_against_cannot_judge_it(lineage):
    """Refused under the field that named it: the judge, or one of the more judges."""
    sft, ppo, proxy, judge = lineage
    assert optimised_against(ppo) == {"rm-proxy"}
    with pytest.raises(ValidationError, match="optimised against") as refused:
        model_comparison_create(version_a=ppo, version_b=sft, reward_version=proxy, queue=False)
    assert list(refused.value.message_dict) == ["reward_version"]
    with pytest.raises(ValidationError, match="optimised against") as refused:
        model_comparison_create(
            version_a=ppo, version_b=sft, reward_version=judge, extra_judges=[proxy], queue=False
        )
    assert list(refused.value.message_dict) == ["extra_judges"]
    # Descendants inherit it.
    child = ModelVersion.objects.create(name="ppo-sft", path=ppo.path, parent=ppo)
    assert optimised_against(child) == {"rm-proxy"}


def test_by_default_the_judge_is_an_independent_reward_model_even_when_another_is_active(lineage):
    sft, ppo, _, judge = lineage
    comparison = model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    assert comparison.reward_version == judge
    assert comparison.config["judges"] == [{"id": judge.pk, "name": "rm-judge"}]
    assert comparison.config["optimised_against"] == ["rm-proxy"]
    assert comparison.config["judge_data_overlaps"] == []  # opposite halves


def test_a_policy_naming_its_reward_model_in_another_letter_case_is_not_judged_by_it(
    lineage, tmp_path
):
    """A name is one version's whatever its letter case: metrics spelling the proxy RM-Proxy
    name it, so it is neither the default judge (though active), nor accepted as one, and a
    judge trained on its rankings is said to overlap it."""
    sft, ppo, proxy, judge = lineage
    ppo.metrics = {"reward_version": "RM-Proxy"}
    ppo.save(update_fields=["metrics"])

    comparison = model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    assert comparison.reward_version == judge
    for judges in ({"reward_version": proxy}, {"reward_version": judge, "extra_judges": [proxy]}):
        with pytest.raises(ValidationError, match="rm-proxy cannot judge"):
            model_comparison_create(version_a=ppo, version_b=sft, queue=False, **judges)
    (tmp_path / "rm-all").mkdir()
    (tmp_path / "rm-all" / "config.json").write_text("{}")
    every_half = ModelVersion.objects.create(
        name="rm-all", kind="reward", path=str(tmp_path / "rm-all")
    )
    overlapping = model_comparison_create(
        version_a=ppo, version_b=sft, reward_version=every_half, queue=False
    )
    assert overlapping.config["judge_data_overlaps"] == ["rm-proxy"]


def test_a_judge_named_twice_judges_once(lineage, tmp_path):
    """An ensemble averages its judges: one named twice (a caller of the service, past the
    form) would count twice."""
    sft, ppo, _, judge = lineage
    (tmp_path / "rm-third").mkdir()
    (tmp_path / "rm-third" / "config.json").write_text("{}")
    third = ModelVersion.objects.create(
        name="rm-third", kind="reward", path=str(tmp_path / "rm-third"), metrics={}
    )
    comparison = model_comparison_create(
        version_a=ppo, version_b=sft, reward_version=judge, extra_judges=[third, third],
        queue=False,
    )  # fmt: skip
    assert [j["name"] for j in comparison.config["judges"]] == ["rm-judge", "rm-third"]


def test_a_projects_comparison_belongs_to_it_and_reads_its_prompts_only(lineage, trainer):
    from ranking.projects.services import project_create

    sft, ppo, _, _ = lineage
    safety = project_create(name="Safety", slug="safety", status="active")
    with pytest.raises(ValidationError, match="no prompt yet in project \u201cSafety\u201d"):
        model_comparison_create(version_a=ppo, version_b=sft, project=safety, queue=False)
    conversation_in_split(trainer, project=safety)
    comparison = model_comparison_create(version_a=ppo, version_b=sft, project=safety, queue=False)
    assert comparison.project == safety
    assert comparison.config["filters"]["project_ids"] == [safety.pk]
    plain = model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    # The default project's: every trainer votes on it, so its prompts come from the projects
    # open to every trainer only.
    assert plain.project.slug == "default"
    assert plain.config["filters"]["project_ids"] == [plain.project.pk, safety.pk]
    safety.trainer_groups.add(Group.objects.create(name="safety-experts"))
    plain = model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    assert plain.config["filters"]["project_ids"] == [plain.project.pk]
    with pytest.raises(ValidationError, match="choose the project the comparison is for"):
        model_comparison_create(
            version_a=ppo,
            version_b=sft,
            filters=ExportFilters(project_ids=(safety.pk,)),
            queue=False,
        )


def test_a_draft_project_lends_prompts_to_a_comparison_only_when_chosen(
    lineage, trainer, admin_client_
):
    """The empty project choice (the default project's comparison, voted on by every trainer)
    drew its prompts from every project open to all trainers, drafts included, under the label
    "Default project": it is labelled for what it does, and a draft (not yet active) lends its
    prompts only when it is the project chosen."""
    from ranking.projects.services import project_create

    sft, ppo, _, _ = lineage
    draft = project_create(name="Trial run", slug="trial", status="draft")
    conversation_in_split(trainer, project=draft)
    plain = model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    assert plain.config["filters"]["project_ids"] == [plain.project.pk]
    chosen = model_comparison_create(version_a=ppo, version_b=sft, project=draft, queue=False)
    assert chosen.config["filters"]["project_ids"] == [draft.pk]
    named = model_comparison_create(
        version_a=ppo, version_b=sft, filters=ExportFilters(project_ids=(draft.pk,)), queue=False
    )
    assert named.config["filters"]["project_ids"] == [draft.pk]
    plain.project.status = "draft"
    plain.project.save()
    with pytest.raises(ValidationError, match="Each project open to all trainers is a draft"):
        model_comparison_create(version_a=ppo, version_b=sft, queue=False)
    # The Models page's form says what the empty choice draws from, and offers the draft.
    page = admin_client_.get(reverse("sampler:models")).content.decode()
    assert '<option value="" selected>Every project open to all trainers</option>' in page
    assert '<option value="trial">Trial run</option>' in page
    assert ">Default project</option>" not in page


def test_a_restricted_projects_side_by_sides_are_for_its_trainers_only(
    lineage, trainer, other_trainer
):
    from ranking.projects.services import project_create

    sft, ppo, _, judge = lineage
    experts = Group.objects.create(name="experts")
    trainer.groups.add(experts)
    secret = project_create(name="Secret", slug="secret", status="active", trainer_groups=[experts])
    comparison = ModelComparison.objects.create(
        project=secret, version_a=ppo, version_b=sft, reward_version=judge
    )
    item = SideBySide.objects.create(
        comparison=comparison,
        version_a=ppo,
        version_b=sft,
        prompt=[{"role": "user", "content": "the secret project's prompt"}],
        reply_a="a",
        reply_b="b",
    )
    outsider = Client()
    outsider.force_login(other_trainer)
    assert side_by_side_next(voter=other_trainer) is None
    assert b"the secret project" not in outsider.get(reverse("sampler:vote")).content
    refused = outsider.post(reverse("sampler:vote-submit", args=[item.pk]), {"choice": "first"})
    assert refused.status_code == 404 and not SideBySideVote.objects.exists()

    member = Client()
    member.force_login(trainer)
    assert b"the secret project" in member.get(reverse("sampler:vote")).content
    voted = member.post(reverse("sampler:vote-submit", args=[item.pk]), {"choice": "first"})
    assert voted.status_code == 302 and SideBySideVote.objects.get().voter == trainer


def test_no_independent_judge_is_a_clear_refusal(lineage):
    sft, ppo, _, judge = lineage
    judge.delete()
    with pytest.raises(ValidationError, match="No reward model is independent"):
        model_comparison_create(version_a=ppo, version_b=sft, queue=False)


def test_no_reward_model_at_all_is_refused_saying_so_not_naming_an_empty_list(lineage):
    sft, _, proxy, judge = lineage
    proxy.delete()
    judge.delete()
    other = ModelVersion.objects.create(name="other", path=sft.path)
    with pytest.raises(ValidationError) as refusal:
        model_comparison_create(version_a=other, version_b=sft, queue=False)
    message = refusal.value.message_dict["reward_version"][0]
    assert "No reward model to judge with yet" in message
    assert "optimised against )" not in message


def test_bradley_terry_two_versions_by_hand():
    # A beats B 3 times out of 4: the maximum-likelihood gap is log 3 (a weak prior shrinks it).
    outcomes = [("a", "b", 1.0)] * 3 + [("a", "b", 0.0)]
    loose = bradley_terry(outcomes, prior=1e-9)
    assert [r.key for r in loose] == ["a", "b"]
    gap = (loose[0].rating - loose[1].rating) / ELO_SCALE
    assert gap == pytest.approx(math.log(3), rel=1e-4)
    assert loose[0].rating + loose[1].rating == pytest.approx(2 * ELO_BASE)
    # Fisher information of the gap: n p (1 - p) = 4 * 3/4 * 1/4; each rating carries half.
    se = math.sqrt(1 / (4 * 0.75 * 0.25)) / 2
    assert loose[0].high - loose[0].rating == pytest.approx(1.959964 * se * ELO_SCALE, rel=1e-3)
    # Ties count half each way; a version that never lost still gets a finite rating.
    tied = bradley_terry([("a", "b", 0.5)] * 4)
    assert tied[0].rating == pytest.approx(tied[1].rating)
    unbeaten = bradley_terry([("a", "b", 1.0)] * 5)
    assert math.isfinite(unbeaten[0].rating) and unbeaten[0].low > unbeaten[1].low


def test_more_votes_narrow_the_interval():
    few = bradley_terry([("a", "b", 1.0), ("a", "b", 0.0)] * 2)
    many = bradley_terry([("a", "b", 1.0), ("a", "b", 0.0)] * 50)
    assert many[0].interval < few[0].interval / 3


# ---- the vote page ----------------------------------------------------------------------------


def test_the_pairs_compared_count_only_those_the_trainer_still_sees(lineage, items, trainer):
    """A vote on a restricted project's pair stays a vote, but once the trainer may not see
    that project's pairs (taken out of its group) the page counts only the pairs they see."""
    from ranking.projects.services import project_create

    sft, ppo, _, judge = lineage
    experts = Group.objects.create(name="experts")
    trainer.groups.add(experts)
    secret = project_create(name="Secret", slug="secret", status="active", trainer_groups=[experts])
    hidden = SideBySide.objects.create(
        comparison=ModelComparison.objects.create(
            project=secret, version_a=ppo, version_b=sft, reward_version=judge
        ),
        version_a=ppo,
        version_b=sft,
        prompt=[{"role": "user", "content": "the secret project's prompt"}],
        reply_a="a",
        reply_b="b",
    )
    for item in (hidden, items[0]):
        side_by_side_vote(item=item, voter=trainer, position="first")
    client = Client()
    client.force_login(trainer)
    assert "You have compared 2 pairs." in client.get(reverse("sampler:vote")).content.decode()

    trainer.groups.remove(experts)
    assert SideBySideVote.objects.filter(voter=trainer).count() == 2
    assert "You have compared 1 pair." in client.get(reverse("sampler:vote")).content.decode()


@pytest.fixture
def items(lineage):
    sft, ppo, _, _ = lineage
    return [
        SideBySide.objects.create(
            version_a=ppo,
            version_b=sft,
            prompt=[{"role": "user", "content": f"question {index} <b>bold</b>"}],
            reply_a=f"ppo reply {index} <script>alert(1)</script>",
            reply_b=f"sft reply {index}",
        )
        for index in range(3)
    ]


def test_the_vote_page_needs_login_and_the_trainer_role(items, plain_user):
    url = reverse("sampler:vote")
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    client = Client()
    client.force_login(plain_user)
    assert client.get(url).status_code == 403
    assert client.post(reverse("sampler:vote-submit", args=[items[0].pk])).status_code == 403


def test_a_trainer_votes_the_order_is_random_and_text_is_escaped(items, trainer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(trainer)
    page = client.get(reverse("sampler:vote"))
    html = page.content.decode()
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    assert "<b>bold</b>" not in html
    assert "ppo" not in html.split("<h1>")[1].split("You have compared")[0].replace(
        "ppo reply", ""
    )  # the versions' names are never shown
    # Nor which reply is A: the order shown is the server's, kept out of the page.
    assert "a_first" not in html
    (shown,) = [item for item in items if f"question {items.index(item)} " in html]
    a_at = html.index(escape(shown.reply_a))
    assert (a_at < html.index(shown.reply_b)) is side_by_side_order(item=shown, voter=trainer)
    # Without the CSRF token the vote is refused.
    assert (
        client.post(
            reverse("sampler:vote-submit", args=[items[0].pk]), {"choice": "first"}
        ).status_code
        == 403
    )
    token = client.cookies["csrftoken"].value
    # The second reply chosen: a vote for whichever version the server showed second. What
    # the page's order was is not taken from the post.
    a_first = side_by_side_order(item=items[0], voter=trainer)
    response = client.post(
        reverse("sampler:vote-submit", args=[items[0].pk]),
        {"choice": "second", "a_first": "1" if not a_first else "0", "csrfmiddlewaretoken": token},
    )
    assert response.status_code == 302
    vote = SideBySideVote.objects.get()
    assert vote.choice == ("b" if a_first else "a") and vote.a_shown_first is a_first
    assert vote.voter == trainer
    a_first = side_by_side_order(item=items[1], voter=trainer)
    client.post(
        reverse("sampler:vote-submit", args=[items[1].pk]),
        {"choice": "first", "csrfmiddlewaretoken": token},
    )
    assert SideBySideVote.objects.get(item=items[1]).choice == ("a" if a_first else "b")
    client.post(
        reverse("sampler:vote-submit", args=[items[2].pk]),
        {"choice": "tie", "csrfmiddlewaretoken": token},
    )
    expected = {"tie", "b" if side_by_side_order(item=items[0], voter=trainer) else "a"}
    expected.add("a" if a_first else "b")
    assert set(SideBySideVote.objects.values_list("choice", flat=True)) == expected
    # Nothing left for this trainer.
    assert side_by_side_next(voter=trainer) is None
    assert b"Nothing left to compare" in client.get(reverse("sampler:vote")).content
    bad = client.post(
        reverse("sampler:vote-submit", args=[items[2].pk]),
        {"choice": "left", "csrfmiddlewaretoken": token},
    )
    assert bad.status_code == 400
    assert (
        client.post(
            reverse("sampler:vote-submit", args=[999999]),
            {"choice": "tie", "csrfmiddlewaretoken": token},
        ).status_code
        == 404
    )


def test_order_is_a_fair_coin_and_items_are_drawn_at_random(items, trainer, other_trainer):
    pairs = [SideBySide(pk=pk) for pk in range(400)]
    firsts = [side_by_side_order(item=item, voter=trainer) for item in pairs]
    assert 160 < sum(firsts) < 240
    # Each pair's order is the trainer's own, and the same on every showing.
    others = [side_by_side_order(item=item, voter=other_trainer) for item in pairs]
    assert firsts != others
    assert firsts == [side_by_side_order(item=item, voter=trainer) for item in pairs]
    drawn = {side_by_side_next(voter=trainer, rng=random.Random(seed)).pk for seed in range(30)}
    assert drawn == {item.pk for item in items}


def test_models_page_shows_ratings_with_intervals_and_both_judges(
    items, lineage, trainer, other_trainer, admin_client_
):
    sft, ppo, _, judge = lineage
    for voter in (trainer, other_trainer):
        for item in items[:2]:
            SideBySideVote.objects.create(item=item, voter=voter, choice="a", a_shown_first=True)
    SideBySideVote.objects.create(item=items[2], voter=trainer, choice="b", a_shown_first=False)
    tally = vote_tallies()[ppo.pk, sft.pk]
    assert (tally.wins, tally.losses, tally.ties) == (4, 1, 0)
    assert vote_tallies()[sft.pk, ppo.pk].wins == 1
    ratings = version_ratings()
    assert [r.version for r in ratings] == [ppo, sft]
    ModelComparison.objects.create(
        version_a=sft,
        version_b=ppo,
        reward_version=judge,
        status="succeeded",
        config={"judges": [{"id": judge.pk, "name": "rm-judge"}]},
        results={"win_rate_a": 0.25, "wins_a": 1, "wins_b": 3, "ties": 0, "prompts": 4},
    )
    html = admin_client_.get(reverse("sampler:models")).content.decode()
    assert 'id="ratings-table"' in html
    row = html.split('data-version="ppo" data-active')[1].split("</tr>")[0]
    # Against its parent: the judge's 75 % (it was B in that comparison) and people's 80 %.
    assert "judge 75%" in row and "(rm-judge)" in row and "people 80%" in row and "5 votes" in row
    low, high = ratings[0].rating.low, ratings[0].rating.high
    assert f"{low:.0f} \N{EN DASH} {high:.0f}" in html


def test_a_comparison_whose_replies_cannot_fit_a_versions_context_is_refused(lineage):
    """As a generation job is: max_new_tokens that leave a version no room for the prompt are
    refused when the comparison is asked for, not found out by a worker after sampling."""
    sft, ppo, _, _ = lineage
    ModelVersion.objects.filter(pk=sft.pk).update(context_length=64)
    sft.refresh_from_db()
    with pytest.raises(ValidationError) as refused:
        model_comparison_create(version_a=ppo, version_b=sft, max_new_tokens=60, queue=False)
    assert "64-token context" in " ".join(refused.value.message_dict["max_new_tokens"])
    assert not ModelComparison.objects.exists()
    fits = model_comparison_create(version_a=ppo, version_b=sft, max_new_tokens=48, queue=False)
    assert fits.config["max_new_tokens"] == 48


def test_the_comparison_form_refuses_max_new_tokens_past_each_chosen_versions_context(lineage):
    """The form checked the tokens against GENERATION_MAX_NEW_TOKENS alone, so a limit a
    version's context cannot hold passed it (and, beside any other mistake on the form, went
    unsaid). It now checks each chosen version as the playground checks the active policy, in
    the service's words, naming the version, whatever else the form refuses."""
    from sampler.comparisons.forms import ComparisonForm

    sft, ppo, _, _ = lineage
    ModelVersion.objects.filter(pk=sft.pk).update(context_length=64)
    ModelVersion.objects.filter(pk=ppo.pk).update(context_length=40)

    def errors(max_new_tokens):
        # "prompts" left out: the form refuses it too.
        form = ComparisonForm(
            {"version_a": ppo.pk, "version_b": sft.pk, "max_new_tokens": max_new_tokens}
        )
        assert not form.is_valid() and "prompts" in form.errors
        return form.errors.get("max_new_tokens", [])

    assert errors(60) == [
        f"ppo: {context_room_error(context_length=40, max_new_tokens=60)}",
        f"sft: {context_room_error(context_length=64, max_new_tokens=60)}",
    ]
    assert errors(30) == [
        "ppo: max_new_tokens=30 leaves less than 16 tokens for the prompt in this model's "
        "40-token context; ask for at most 24."
    ]
    assert errors(24) == []


def test_the_comparison_forms_max_tokens_bound_is_the_most_the_server_takes(lineage, settings):
    """The field offered up to GENERATION_MAX_NEW_TOKENS while every policy's context left
    less, which the service refuses: its bound is now the most any policy offered takes."""
    from sampler.comparisons.forms import ComparisonForm

    settings.GENERATION_MAX_NEW_TOKENS = 256
    ModelVersion.objects.filter(kind="policy").update(context_length=256)

    def bound():
        return ComparisonForm().fields["max_new_tokens"].widget.attrs["max"]

    assert bound() == 240  # 256 less the prompt's 16 tokens, as the service asks at most
    ModelVersion.objects.filter(name="ppo").update(context_length=200)
    assert bound() == 240  # the sft leaves 240
    ModelVersion.objects.filter(name="sft").update(context_length=None)  # not known
    assert bound() == 256
    ModelVersion.objects.filter(kind="policy").update(context_length=4096)
    assert bound() == 256


def test_the_next_pair_is_drawn_even_when_a_vote_lands_while_it_is_drawn(items, trainer):
    """A vote from another tab between counting the pairs left and reading the one drawn left
    one pair fewer than counted: drawing the last place read past the end (a server error)."""

    class VoteFromAnotherTab(random.Random):
        def randrange(self, count):
            side_by_side_vote(item=items[0], voter=trainer, position="tie")
            return count - 1

    drawn = side_by_side_next(voter=trainer, rng=VoteFromAnotherTab())
    assert drawn is not None and drawn.pk in {items[1].pk, items[2].pk}


def test_the_comparison_form_caps_max_new_tokens_at_the_deployments_setting(policy, settings):
    """The form and the service agree on the cap (GENERATION_MAX_NEW_TOKENS), read per request:
    not a fixed number that refuses what a deployment allows, or takes what it refuses."""
    from sampler.comparisons.forms import ComparisonForm

    def error(value):
        form = ComparisonForm({"max_new_tokens": value})
        form.is_valid()
        return form.errors.get("max_new_tokens")

    settings.GENERATION_MAX_NEW_TOKENS = 8000
    assert error(6000) is None
    policy.context_length = None  # not known: the cap alone bounds the field
    policy.save(update_fields=["context_length"])
    assert ComparisonForm().fields["max_new_tokens"].widget.attrs["max"] == 8000
    settings.GENERATION_MAX_NEW_TOKENS = 100
    assert error(101) and error(100) is None


def test_a_failed_comparison_shows_its_reason_without_the_traceback(admin_client_):
    a, b, judge = (ModelVersion.objects.create(name=name, path=name) for name in "abj")
    ModelComparison.objects.create(
        version_a=a, version_b=b, reward_version=judge, status="failed",
        error='OSError: disk full\n  File "/srv/tandem/sampler/comparisons/services.py", line 9\n',
    )  # fmt: skip
    html = admin_client_.get(reverse("sampler:models")).content.decode()
    assert "OSError: disk full" in html
    assert "/srv/tandem" not in html and "File &quot;" not in html
