"""The ranking screen is blind: nothing on the Rank page, in its feedback widgets or in the
ranking API tells the reply a task was made from (the original) from the alternatives sampled
for it. Its candidate row is made first, so its candidate id (and its message's id) is the
smallest of the task's: a reply addressed by such an id gives it away."""

import json
import random
import re
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.urls import reverse

from accounts.services import user_create_trainer
from labeling.feedback.models import Feedback
from ranking.models import Assignment, Candidate, Ranking, RankingTask
from ranking.projects.selectors import project_default
from ranking.rank import services
from ranking.rank.selectors import assignment_screen
from sampler.generation.params import MIN_PROMPT_TOKENS, GenerationParams
from sampler.models import GenerationJob, ModelVersion
from sampler.moderation.services import samples_moderate
from tests.conftest import PASSWORD
from tests.ranking.conftest import (
    edited_from_a_suggestion,
    finished_conversation,
    imported_reply,
)

RANK_URL = reverse("ranking:rank")
CLAIM_URL = reverse("ranking:claim")
API_CLAIM_URL = "/api/ranking/claim/"
HTMX = {"HTTP_HX_REQUEST": "true"}


VOID = {"area", "br", "col", "hr", "img", "input", "link", "meta", "source", "wbr"}


class _Shapes(HTMLParser):
    """Each ``<li>`` carrying the attribute ``marked``, as the (tag, attribute names, classes)
    of every element in it: what a row is made of, without its words or values. What a reply's
    own text renders to (its Markdown: paragraphs, emphasis, lists) is the reply's, not the
    row's, and is passed over."""

    def __init__(self, marked: str) -> None:
        super().__init__()
        self.marked = marked
        self.rows: list[list[tuple]] = []
        self.depth = 0
        self.in_text = 0  # open elements inside a reply's rendered text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.in_text:
            self.in_text += tag not in VOID
            return
        names = dict(attrs)
        if not self.depth and not (tag == "li" and self.marked in names):
            return
        if not self.depth:
            self.rows.append([])
        classes = names.get("class") or ""
        self.rows[-1].append((tag, tuple(sorted(names)), classes))
        if tag not in VOID:
            self.depth += 1
            self.in_text = int("candidate-text" in classes.split())

    def handle_endtag(self, tag: str) -> None:
        if self.in_text and tag not in VOID:
            self.in_text -= 1
            if self.in_text:
                return
        if self.depth and tag not in VOID:
            self.depth -= 1


def _shapes(html: str, marked: str) -> list[list[tuple]]:
    parser = _Shapes(marked)
    parser.feed(html)
    return parser.rows


def _assignment(trainer) -> Assignment:
    return Assignment.objects.get(trainer=trainer, status=Assignment.Status.LEASED)


def _original_shown_last(trainer) -> Assignment:
    """The trainer's lease, its replies shown newest first: the original (made first) last."""
    assignment = _assignment(trainer)
    assignment.presentation_order = sorted(assignment.presentation_order, reverse=True)
    assignment.save(update_fields=["presentation_order"])
    original = Candidate.objects.get(task=assignment.task, is_source=True).pk
    assert assignment.presentation_order[-1] == original
    return assignment


def _rank_page(client: Client) -> str:
    response = client.get(RANK_URL)
    assert response.status_code == 200
    return response.content.decode()


def _rows(html: str) -> list[str]:
    """The reply rows of the ranking list, in the order shown."""
    rows = re.findall(r'<li class="candidate[^"]*".*?(?=<li class="candidate|</ol>)', html, re.S)
    return rows


@pytest.fixture
def shown_last(ready_task, trainer_client, trainer) -> Assignment:
    trainer_client.post(CLAIM_URL)
    return _original_shown_last(trainer)


def test_rows_are_keyed_by_the_number_shown_not_by_an_id_that_sorts_the_original_first(
    shown_last, trainer_client
):
    html = _rank_page(trainer_client)

    rows = _rows(html)
    assert len(rows) == 4
    for number, row in enumerate(rows, start=1):
        assert f'data-number="{number}"' in row
        # Every name a row's inputs and labels carry is its number as shown.
        assert set(re.findall(r'data-candidate-id="([^"]*)"', row)) == {str(number)}
        assert set(re.findall(r'name="(?:rank|flag_note|flag)_([^"]*)"', row)) == {str(number)}
        assert set(re.findall(r'<input type="hidden" name="order" value="([^"]*)"', row)) == {
            str(number)
        }
        assert set(re.findall(r'id="reply-(?:title|text)-([^"]*)"', row)) == {str(number)}
    # The original is shown last: nothing in the card sorts it first.
    original_key = re.search(r'data-candidate-id="([^"]*)"', rows[-1]).group(1)
    keys = re.findall(r'data-candidate-id="([^"]*)"', html)
    assert sorted(keys, key=int)[0] != original_key
    assert keys == sorted(keys, key=int)  # the numbers shown, in the order shown
    # No row id of the database is on the page: not the candidates', not their messages'.
    assert "/feedback/message/" not in html
    feedback_for = re.findall(r'data-feedback-for="([^"]*)"', html)
    assert feedback_for == ["1", "2", "3", "4"]


def test_the_original_row_is_made_of_the_same_elements_as_the_sampled_ones(
    shown_last, trainer_client
):
    html = _rank_page(trainer_client)

    candidates = _shapes(html, "data-candidate-id")
    assert len(candidates) == 4
    assert all(row == candidates[0] for row in candidates)
    feedback = _shapes(html, "data-feedback-for")
    assert len(feedback) == 4
    assert all(row == feedback[0] for row in feedback)


def _feedback_urls(html: str) -> list[str]:
    """The feedback slot's address of each reply, in the order shown."""
    section = html[html.index('class="card ranking-feedback"') :]
    return re.findall(r'<div class="feedback" hx-get="([^"]+)"', section)


def _normalised_widget(html: str, url: str, number: int) -> str:
    """The widget's markup less what differs between two replies by rights: its address (the
    number shown) and the form's CSRF token (masked afresh each time)."""
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", html)
    return html.replace(url, "URL").replace(f"reply-{number}", "reply-N")


def test_the_feedback_widget_of_every_reply_is_the_same_kind(shown_last, trainer_client):
    """The original here was written without a sample, so the content filter never saw it; its
    alternatives were filtered (and passed): a verdict shown for some replies only (the report's
    "the content filter was wrong" box) would single the original out."""
    urls = _feedback_urls(_rank_page(trainer_client))
    assert len(urls) == 4

    widgets = []
    for number, url in enumerate(urls, start=1):
        response = trainer_client.get(url, **HTMX)
        assert response.status_code == 200
        widgets.append(_normalised_widget(response.content.decode(), url, number))
    assert all(widget == widgets[0] for widget in widgets)
    assert "/feedback/message/" not in "".join(widgets)


def test_feedback_on_a_sampled_reply_from_the_rank_page_is_stored_on_its_message(
    shown_last, trainer_client, trainer
):
    urls = _feedback_urls(_rank_page(trainer_client))
    sampled = Candidate.objects.select_related("message__sample__job").get(
        pk=shown_last.presentation_order[0]
    )
    assert not sampled.is_source

    url = urls[0]
    rated = trainer_client.post(url, {"action": "rate", "rating": "down"}, **HTMX)
    reported = trainer_client.post(
        url, {"action": "report", "categories": ["untruthful"], "comment": "made up"}, **HTMX
    )

    assert rated.status_code == 200 and reported.status_code == 200
    assert 'aria-label="Thumbs down" aria-pressed="true"' in reported.content.decode()
    feedback = Feedback.objects.get(user=trainer)
    assert feedback.message_id == sampled.message_id and feedback.sample_id is None
    assert (feedback.rating, feedback.categories, feedback.comment) == (
        "down",
        ["untruthful"],
        "made up",
    )
    assert feedback.model_version_id == sampled.message.sample.job.model_version_id
    assert feedback.project_id == shown_last.task.project_id


def test_feedback_on_a_reply_works_without_javascript_and_names_no_model(
    shown_last, trainer_client, trainer
):
    url = _feedback_urls(_rank_page(trainer_client))[3]  # the original, shown last

    page = trainer_client.get(url)
    posted = trainer_client.post(url, {"action": "rate", "rating": "up"})

    assert page.status_code == 200
    html = page.content.decode()
    assert "Reply 4" in html and f'href="{RANK_URL}"' in html
    assert shown_last.task.model_version.name not in html and "Unknown model" not in html
    assert posted.status_code == 302 and posted.headers["Location"] == url
    original = Candidate.objects.get(pk=shown_last.presentation_order[3])
    assert Feedback.objects.get(user=trainer).message_id == original.message_id


def test_a_reply_is_rated_only_by_the_trainer_given_it(shown_last, trainer_client, db):
    url = _feedback_urls(_rank_page(trainer_client))[0]
    outsider = user_create_trainer(username="outsider", password=PASSWORD)
    client = Client()
    client.force_login(outsider)

    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "rate", "rating": "up"}).status_code == 404
    assert trainer_client.get(url.replace("/1/", "/5/")).status_code == 404  # no reply 5
    assert not Feedback.objects.exists()


def test_a_reply_is_not_reached_by_its_message_id_and_my_feedback_names_no_model(
    shown_last, trainer_client, trainer
):
    """Through its message id a reply would tell its place in the writer's conversation (the
    original's id is the smallest); "My feedback" would tell each reply's model, and the
    original's may be another than its alternatives'."""
    url = _feedback_urls(_rank_page(trainer_client))[0]
    trainer_client.post(url, {"action": "rate", "rating": "down"})
    feedback = Feedback.objects.get(user=trainer)

    assert trainer_client.get(f"/write/feedback/message/{feedback.message_id}/").status_code == 404
    mine = trainer_client.get(reverse("labeling:feedback-mine")).content.decode()
    assert shown_last.task.model_version.name not in mine
    detail = trainer_client.get(reverse("labeling:feedback-detail", args=[feedback.pk]))
    assert detail.status_code == 302 and detail.headers["Location"] == url


# ---- the API --------------------------------------------------------------------------------


def _api_claim(client: Client) -> dict:
    response = client.post(API_CLAIM_URL, "{}", content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def _kinds(value: object) -> object:
    """The shape of a JSON value: its keys and their types, not their values."""
    if isinstance(value, dict):
        return {key: _kinds(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_kinds(item) for item in value]
    return type(value).__name__


def test_the_claim_api_gives_every_reply_the_same_fields_and_its_number_as_id(
    ready_task, trainer_client, trainer
):
    _api_claim(trainer_client)
    _original_shown_last(trainer)

    body = _api_claim(trainer_client)

    candidates = body["candidates"]
    assert [c["id"] for c in candidates] == [1, 2, 3, 4]  # the original is reply 4
    assert all(_kinds(c) == _kinds(candidates[0]) for c in candidates)
    for candidate in candidates:
        # No message id: the original's is the smallest.
        assert set(candidate) == {"id", "text", "moderation"}
        # The original, with no sample, was filtered on its own text as the others were:
        # no verdict stands out by being there or not, nor by its filter's version.
        assert candidate["moderation"] is not None
    assert len({c["moderation"]["version"] for c in candidates}) == 1


def test_verdicts_are_given_for_every_reply_when_the_filter_saw_them_all(
    flag_everything, ready_task, trainer_client, trainer
):
    source = ready_task.source_message
    job = ready_task.generation_job
    source.sample = job.samples.create(
        index=99, text=source.content, token_count=3, finish_reason="end_of_turn", logprob_sum=-1
    )
    source.save(update_fields=["sample"])
    samples_moderate(samples=[source.sample])

    candidates = _api_claim(trainer_client)["candidates"]

    assert [c["moderation"]["flagged"] for c in candidates] == [True] * 4
    assert all(_kinds(c) == _kinds(candidates[0]) for c in candidates)


def test_a_ranking_submitted_by_shown_numbers_is_stored_by_candidate_and_answered_by_number(
    ready_task, trainer_client, trainer
):
    claim = _api_claim(trainer_client)
    order = _assignment(trainer).presentation_order
    payload = {
        "ordering": [[2], [1, 3], [4]],
        "flags": {"4": ["harmful", "other"]},
        "flag_notes": {"4": "insults the user"},
    }

    response = trainer_client.post(
        f"/api/ranking/assignments/{claim['assignment_id']}/submit/",
        json.dumps(payload),
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    ranking = Ranking.objects.get()
    assert ranking.ordering == [[order[1]], [order[0], order[2]], [order[3]]]
    assert ranking.flags == {
        str(order[3]): {"flags": ["harmful", "other"], "note": "insults the user"}
    }
    assert ranking.presentation_order == order
    body = response.json()
    assert body["ordering"] == payload["ordering"]
    assert body["flags"] == {"4": {"flags": ["harmful", "other"], "note": "insults the user"}}
    assert body["presentation_order"] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"ordering": [[1], [2], [3], [5]]}, "ordering"),
        ({"ordering": [[1], [2], [3], [4]], "flags": {"5": ["harmful"]}}, "flags"),
        ({"ordering": [[1], [2], [3], [4]], "flag_notes": {"9": "x"}}, "flag_notes"),
    ],
)
def test_a_number_no_reply_was_shown_under_is_refused(
    ready_task, trainer_client, trainer, payload, field
):
    claim = _api_claim(trainer_client)

    response = trainer_client.post(
        f"/api/ranking/assignments/{claim['assignment_id']}/submit/",
        json.dumps(payload),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert "not part of this task" in json.dumps(response.json()[field])
    assert not Ranking.objects.exists()


@pytest.mark.parametrize(
    ("notes", "flags", "message"),
    [
        ({"1": "note"}, {}, "Reply 1 has a flag note but no flag"),
        ({"2": "a", "4": "b"}, {"4": ["harmful"]}, "Reply 2 has a flag note but no flag"),
        ({"1": "a", "3": "b"}, {}, "Replies 1 and 3 have flag notes but no flag"),
    ],
)
def test_a_flag_note_for_a_reply_with_no_flag_is_a_400_naming_the_reply(
    ready_task, trainer_client, notes, flags, message
):
    """A note says what a reply's flag is about: one on a reply with no flag is refused, the
    reply named by the number it is shown under, and nothing is stored."""
    claim = _api_claim(trainer_client)
    payload = {"ordering": [[1], [2], [3], [4]], "flags": flags, "flag_notes": notes}

    response = trainer_client.post(
        f"/api/ranking/assignments/{claim['assignment_id']}/submit/",
        json.dumps(payload),
        content_type="application/json",
    )

    assert response.status_code == 400, response.content
    assert message in json.dumps(response.json()["flag_notes"])
    assert not Ranking.objects.exists()


def test_the_page_submits_by_shown_numbers_and_stores_candidate_ids(shown_last, trainer_client):
    order = shown_last.presentation_order

    response = trainer_client.post(
        reverse("ranking:submit", args=[shown_last.pk]),
        {
            "order": ["1", "2", "3", "4"],
            "rank_1": "2",
            "rank_2": "1",
            "rank_3": "3",
            "rank_4": "3",
            "flag_4": ["other"],
            "flag_note_4": "odd",
        },
    )

    assert response.status_code == 302
    ranking = Ranking.objects.get()
    assert ranking.ordering == [[order[1]], [order[0]], [order[2], order[3]]]
    assert ranking.flags == {str(order[3]): {"flags": ["other"], "note": "odd"}}


def _written_from_a_suggestion(source, policy, *, suggested: str, limit: int | None = None) -> None:
    """``source`` written from a suggestion of ``policy`` whose text was ``suggested``, its job
    recording every sampling parameter with ``max_new_tokens=limit`` (None: none recorded)."""
    job = GenerationJob.objects.create(
        model_version=policy,
        prefix_message=source.parent,
        prompt_messages=[{"role": "user", "content": source.parent.content}],
        n=1,
        params={} if limit is None else GenerationParams(max_new_tokens=limit).as_dict(),
        seed=7,
        purpose=GenerationJob.Purpose.SUGGESTION,
        status=GenerationJob.Status.SUCCEEDED,
    )
    source.sample = job.samples.create(
        index=0, text=suggested, token_count=3, finish_reason="end_of_turn", logprob_sum=-1
    )
    source.save(update_fields=["sample"])


def _alternatives_limit() -> int:
    """The token limit a task made now from the one finished conversation asks for."""
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    return task.generation_job.params["max_new_tokens"]


@pytest.mark.parametrize("origin", ["model", "model_edited"])
def test_alternatives_are_sampled_under_the_token_limit_of_the_original(
    policy, other_trainer, settings, origin
):
    """A limit the original alone was sampled under would make it the only reply cut there (or
    the only one not cut): its alternatives are asked for the limit its suggestion recorded."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    source = finished_conversation(other_trainer, origin=origin).messages.get(role="assistant")
    _written_from_a_suggestion(source, policy, suggested=source.content, limit=5)

    assert _alternatives_limit() == 5


@pytest.mark.parametrize("sampled", [False, True])
def test_alternatives_of_an_original_with_no_recorded_limit_take_the_ranking_default(
    policy, other_trainer, settings, sampled
):
    """An imported original (no sample) or one whose job recorded no limit."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    source = finished_conversation(other_trainer).messages.get(role="assistant")
    if sampled:
        _written_from_a_suggestion(source, policy, suggested=source.content)

    assert _alternatives_limit() == 8


def test_a_project_that_sets_a_token_limit_keeps_it_whatever_the_original_had(
    policy, other_trainer, settings
):
    settings.RANKING_MAX_NEW_TOKENS = 8
    project = project_default()
    project.sampling_params = {"max_new_tokens": 6, "temperature": 0.7}
    project.save(update_fields=["sampling_params"])
    source = finished_conversation(other_trainer).messages.get(role="assistant")
    _written_from_a_suggestion(source, policy, suggested=source.content, limit=5)

    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )

    assert task.generation_job.params["max_new_tokens"] == 6
    assert task.generation_job.params["temperature"] == 0.7


def test_the_original_s_limit_is_lowered_to_the_cap_and_to_the_policy_s_context(
    policy, other_trainer, settings
):
    """The limit may be the cap of its day, or have fit another model: the policy is asked for
    no more than the cap and its context allow, rather than refusing to make the task."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    source = finished_conversation(other_trainer).messages.get(role="assistant")
    _written_from_a_suggestion(source, policy, suggested=source.content, limit=200)
    settings.GENERATION_MAX_NEW_TOKENS = 150
    assert _alternatives_limit() == 150

    RankingTask.objects.all().delete()
    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS + 40)
    assert _alternatives_limit() == 40


def test_the_ranking_default_limit_is_lowered_to_the_cap_and_to_the_policy_s_context(
    policy, other_trainer, settings
):
    """An imported original takes ``RANKING_MAX_NEW_TOKENS``: a policy whose context leaves
    less for a reply, or a lower cap, is asked for what it takes rather than every task of the
    import being refused."""
    settings.RANKING_MAX_NEW_TOKENS = 96
    finished_conversation(other_trainer)
    ModelVersion.objects.filter(pk=policy.pk).update(context_length=MIN_PROMPT_TOKENS + 40)
    assert _alternatives_limit() == 40

    RankingTask.objects.all().delete()
    settings.GENERATION_MAX_NEW_TOKENS = 30
    assert _alternatives_limit() == 30


def test_the_original_is_filtered_again_with_its_alternatives_by_the_filter_of_the_day(
    policy, other_trainer, trainer_client, trainer, settings
):
    """A verdict on the original by an older filter version than its alternatives' would set it
    apart (the claim gives each verdict's version): preparing the task filters it again."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER_WORDS = {}
    settings.CONTENT_FILTER_PATTERNS = {"shouting": ["!!!"]}
    source = finished_conversation(other_trainer).messages.get(role="assistant")
    _written_from_a_suggestion(source, policy, suggested=source.content)
    older = samples_moderate(samples=[source.sample])[source.sample_id].filter_version
    settings.CONTENT_FILTER_PATTERNS = {"shouting": ["!!!!"]}  # another version of the filter

    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)
    candidates = _api_claim(trainer_client)["candidates"]

    versions = {c["moderation"]["version"] if c["moderation"] else None for c in candidates}
    assert len(versions) == 1 and versions != {older} and versions != {None}


def test_feedback_on_a_reply_of_a_lease_an_undo_gave_back_names_neither_model_nor_message(
    ready_task, other_trainer, trainer_client, trainer, settings
):
    """Taking a ranking back gives back the lease on the next task, which was on screen: the
    trainer may have rated one of its replies meanwhile. With the lease gone, nothing shows
    that reply to them any more, but "My feedback" must still not name its model, nor its
    link lead to the reply's message id (the original's is the smallest)."""
    settings.RANKING_UNDO_SECONDS = 600
    finished_conversation(other_trainer, turns=("another question?", "another answer."))
    second = services.ranking_task_create(
        rng=random.Random(1), alternatives=3, overlap=2, queue=False
    )
    services.ranking_task_prepare(task_id=second.pk)
    trainer_client.post(CLAIM_URL)
    first = _assignment(trainer)
    ranks = {f"rank_{number}": str(number) for number in range(1, 5)}
    submitted = trainer_client.post(
        reverse("ranking:submit", args=[first.pk]),
        {"order": ["1", "2", "3", "4"], **ranks},
        **HTMX,
    )
    assert submitted.status_code == 200
    following = _assignment(trainer)
    assert following.pk != first.pk
    sampled = Candidate.objects.filter(task=following.task, is_source=False).first()
    number = following.presentation_order.index(sampled.pk) + 1
    reply_url = reverse("labeling:feedback-reply", args=[following.pk, number])
    rated = trainer_client.post(reply_url, {"action": "rate", "rating": "down"}, **HTMX)
    assert rated.status_code == 200

    ranking = Ranking.objects.get(ranker=trainer)
    undone = trainer_client.post(reverse("ranking:undo", args=[ranking.pk]), **HTMX)
    assert undone.status_code == 200
    assert not Assignment.objects.filter(pk=following.pk).exists()  # the lease given back

    feedback = Feedback.objects.get(user=trainer)
    assert feedback.message_id == sampled.message_id
    mine = trainer_client.get(reverse("labeling:feedback-mine")).content.decode()
    assert second.model_version.name not in mine
    detail = trainer_client.get(reverse("labeling:feedback-detail", args=[feedback.pk]))
    assert str(feedback.message_id) not in detail.headers.get("Location", "")
    assert detail.status_code == 404
    # Nothing on the page links to that 404.
    assert reverse("labeling:feedback-detail", args=[feedback.pk]) not in mine


def _claimed_from_an_edited_original(
    settings, client: Client, owner, policy, *, suggested: str, written: str
) -> list[dict]:
    """The candidates a claim gives of the task made of a reply its writer edited from the
    suggestion ``suggested`` into ``written`` (flagged replies ranked too)."""
    settings.RANKING_MAX_NEW_TOKENS = 8
    settings.CONTENT_FILTER_BLOCK_RANKING = False
    source = edited_from_a_suggestion(owner, policy, suggested=suggested, written=written)
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)
    assert task.candidates.get(is_source=True).message_id == source.pk
    return _api_claim(client)["candidates"]


def test_an_edited_original_shows_the_verdict_on_its_own_text_not_its_suggestions(
    secrets_filter, policy, other_trainer, trainer_client
):
    """A reply the writer edited from a suggestion keeps the suggestion's sample, whose text is
    not the reply's: the verdict shown is on the reply's own words (filtered as the task is
    prepared, by the filter its alternatives were), like every other reply's."""
    # The model's suggestion gave a password away; the writer took it out.
    candidates = _claimed_from_an_edited_original(
        secrets_filter,
        trainer_client,
        other_trainer,
        policy,
        suggested="here is the password.",
        written="here is the answer.",
    )
    html = _rank_page(trainer_client)

    texts = {c["text"]: c["moderation"] for c in candidates}
    verdict = texts["here is the answer."]
    assert verdict is not None and verdict["flagged"] is False
    assert {c["moderation"]["version"] for c in candidates} == {verdict["version"]}
    assert all(_kinds(c) == _kinds(candidates[0]) for c in candidates)
    assert 'class="moderation-warning"' not in html


def test_an_original_edited_into_flagged_words_is_shown_flagged(
    secrets_filter, policy, other_trainer, trainer_client
):
    candidates = _claimed_from_an_edited_original(
        secrets_filter,
        trainer_client,
        other_trainer,
        policy,
        suggested="here is the answer.",
        written="here is the password.",
    )
    html = _rank_page(trainer_client)

    verdict = {c["text"]: c["moderation"] for c in candidates}["here is the password."]
    assert verdict["flagged"] is True and verdict["categories"] == ["secrets"]
    assert html.count('class="moderation-warning"') == sum(
        c["moderation"]["flagged"] for c in candidates
    )
    assert "The content filter flagged this: secrets" in html


@pytest.mark.parametrize("written", ["here is the password.", "here is the answer."])
def test_an_imported_original_shows_the_verdict_on_its_own_text(
    secrets_filter, policy, other_trainer, trainer_client, written
):
    """A reply brought in by an import has no sample here: it is filtered on its own text as
    the task is prepared, by the filter its alternatives were, and its verdict is shown like
    every other reply's (flagged words warned of; none missing to set it apart)."""
    secrets_filter.RANKING_MAX_NEW_TOKENS = 8
    secrets_filter.CONTENT_FILTER_BLOCK_RANKING = False
    source = imported_reply(other_trainer, written=written)
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)
    assert task.candidates.get(is_source=True).message_id == source.pk

    candidates = _api_claim(trainer_client)["candidates"]
    html = _rank_page(trainer_client)

    verdict = {c["text"]: c["moderation"] for c in candidates}[written]
    assert verdict is not None
    assert verdict["flagged"] is ("password" in written)
    assert verdict["categories"] == (["secrets"] if verdict["flagged"] else [])
    assert all(set(c["moderation"]) == set(verdict) for c in candidates)
    assert {c["moderation"]["version"] for c in candidates} == {verdict["version"]}
    assert html.count('class="moderation-warning"') == sum(
        c["moderation"]["flagged"] for c in candidates
    )


def test_the_screen_takes_the_queries_its_docstring_says(shown_last, django_assert_num_queries):
    """``assignment_screen``: the prefix's last turn, its conversation, the replies, their
    verdicts; however many replies there are."""
    assignment = Assignment.objects.select_related("task").get(pk=shown_last.pk)

    with django_assert_num_queries(4):
        screen = assignment_screen(assignment=assignment)

    assert len(screen.candidates) == 4
