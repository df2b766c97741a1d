import random
from collections import Counter
from datetime import timedelta
from html import unescape
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from accounts.services import user_create_trainer
from config.text import NUL_MESSAGE, SURROGATE_MESSAGE
from labeling.conversations import services as labeling_services
from labeling.conversations.selectors import ranking_source_pick
from labeling.models import Conversation, Message
from ranking.models import Assignment, Project, Ranking, RankingTask
from ranking.projects.selectors import project_default
from ranking.projects.services import project_create
from ranking.rank import services
from ranking.rank.selectors import (
    assignment_screen,
    ranking_pool_open_tasks,
    ranking_summary_for_trainer,
    ranking_undo_open_until,
)
from ranking.rank.services import RankingConflict, RankingInput
from tests.conftest import PASSWORD
from tests.ranking.conftest import (
    finished_conversation,
    model_version_create,
    quick_trainer,
    task_from_source,
)


def _order(assignment):
    """Best to worst in presentation order, with the last two tied."""
    ids = assignment.presentation_order
    return [[ids[0]], [ids[1]], ids[2:]]


class Clock:
    """Stands in for ``timezone.now`` (services and ``auto_now_add`` fields alike)."""

    def __init__(self) -> None:
        self.now = timezone.now().replace(microsecond=0)

    def __call__(self):
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def quick_task(other_trainer):
    """A ready task on other_trainer's conversation, built without running a model."""
    conversation = finished_conversation(other_trainer)
    return task_from_source(conversation.active_leaf, model_version=model_version_create("p"))


@pytest.fixture
def clock():
    clock = Clock()
    with mock.patch("django.utils.timezone.now", clock):
        yield clock


def test_task_has_source_plus_k_sibling_alternatives_with_provenance(ready_task):
    task = ready_task
    assert task.status == RankingTask.Status.READY
    candidates = list(task.candidates.select_related("message__sample__job"))
    assert len(candidates) == 4
    source = [c for c in candidates if c.is_source]
    assert len(source) == 1 and source[0].message == task.source_message
    for candidate in candidates:
        assert candidate.message.parent_id == task.prefix_message_id
        assert candidate.message.role == "assistant"
    alternatives = [c.message for c in candidates if not c.is_source]
    assert {m.sample.job.purpose for m in alternatives} == {"ranking"}
    assert {m.model_version_id for m in alternatives} == {task.model_version_id}


def test_alternatives_are_never_picked_as_sources_and_sources_are_not_reused(ready_task):
    assert services.ranking_task_create(rng=random.Random(1), queue=False) is None


def test_preparing_twice_creates_candidates_once(ready_task):
    services.ranking_task_prepare(task_id=ready_task.pk)
    assert ready_task.candidates.count() == 4


def test_claim_submit_with_ties_and_flags(ready_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    assert assignment.task == ready_task
    assert sorted(assignment.presentation_order) == sorted(
        ready_task.candidates.values_list("id", flat=True)
    )
    flagged = assignment.presentation_order[3]
    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput(
            ordering=_order(assignment),
            flags={flagged: ["harmful", "other"]},
            flag_notes={flagged: "rude"},
            rationale="first is clearest",
        ),
    )
    assert ranking.ordering == _order(assignment)
    assert ranking.flags == {str(flagged): {"flags": ["harmful", "other"], "note": "rude"}}
    assert ranking.presentation_order == assignment.presentation_order
    assert ranking.duration_ms >= 0
    ready_task.refresh_from_db()
    assert (ready_task.rankings_count, ready_task.leased_count) == (1, 0)


def test_claim_returns_the_current_lease_until_it_is_used(ready_task, trainer):
    first = services.task_claim_next(trainer=trainer)
    assert services.task_claim_next(trainer=trainer) == first


def test_writer_of_the_conversation_never_gets_its_task(ready_task, other_trainer):
    assert services.task_claim_next(trainer=other_trainer) is None


def test_task_is_leased_to_no_more_trainers_than_it_needs(ready_task, trainer):
    third = user_create_trainer(username="third", password=PASSWORD)
    fourth = user_create_trainer(username="fourth", password=PASSWORD)
    assert services.task_claim_next(trainer=trainer) is not None
    assert services.task_claim_next(trainer=third) is not None
    assert services.task_claim_next(trainer=fourth) is None  # overlap is 2


def test_skipped_task_is_not_served_again_and_frees_its_slot(ready_task, trainer):
    third = user_create_trainer(username="third", password=PASSWORD)
    fourth = user_create_trainer(username="fourth", password=PASSWORD)
    assignment = services.task_claim_next(trainer=trainer)
    services.assignment_skip(assignment=assignment, trainer=trainer, reason="not my language")
    assert services.task_claim_next(trainer=trainer) is None
    assert services.task_claim_next(trainer=third) is not None
    assert services.task_claim_next(trainer=fourth) is not None
    assert Assignment.objects.get(pk=assignment.pk).skip_reason == "not my language"


def test_double_submit_keeps_the_first_ranking(ready_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    with pytest.raises(RankingConflict, match="already ranked"):
        services.ranking_submit(
            assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
        )
    ready_task.refresh_from_db()
    assert ready_task.rankings_count == 1


def test_expired_lease_is_released_and_a_late_submit_is_refused_once_the_task_is_full(
    ready_task, trainer
):
    third = user_create_trainer(username="third", password=PASSWORD)
    fourth = user_create_trainer(username="fourth", password=PASSWORD)
    late = services.task_claim_next(trainer=trainer)
    Assignment.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    for other in (third, fourth):
        assignment = services.task_claim_next(trainer=other)
        assert assignment is not None and assignment.task == ready_task
        services.ranking_submit(
            assignment=assignment, trainer=other, ranking=RankingInput(_order(assignment))
        )
    with pytest.raises(RankingConflict, match="ran out"):
        services.ranking_submit(
            assignment=late, trainer=trainer, ranking=RankingInput(_order(late))
        )
    ready_task.refresh_from_db()
    assert ready_task.rankings_count == 2 and ready_task.status == RankingTask.Status.COMPLETE


def test_late_submit_is_accepted_while_the_task_still_has_room(ready_task, trainer):
    late = services.task_claim_next(trainer=trainer)
    Assignment.objects.filter(pk=late.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    services.leases_expire()
    services.ranking_submit(assignment=late, trainer=trainer, ranking=RankingInput(_order(late)))
    ready_task.refresh_from_db()
    assert (ready_task.rankings_count, ready_task.leased_count) == (1, 0)


@pytest.mark.parametrize(
    ("make_input", "field"),
    [
        (lambda ids: RankingInput([[ids[0]], ids[1:3]]), "ordering"),  # one missing
        (lambda ids: RankingInput([[ids[0]], [ids[0]], ids[1:]]), "ordering"),  # twice
        (lambda ids: RankingInput([[ids[0]], [], ids[1:]]), "ordering"),  # empty rank
        (lambda ids: RankingInput([ids]), "ordering"),  # all tied
        (lambda ids: RankingInput([[ids[0]], [*ids[1:], 999999]]), "ordering"),  # foreign id
        (lambda ids: RankingInput([[i] for i in ids], flags={ids[0]: ["boring"]}), "flags"),
        (lambda ids: RankingInput([[i] for i in ids], flags={ids[0]: ["other"]}), "flags"),
        (lambda ids: RankingInput([[i] for i in ids], rationale="x" * 4001), "rationale"),
    ],
)
def test_invalid_rankings_are_refused_with_a_message(ready_task, trainer, make_input, field):
    assignment = services.task_claim_next(trainer=trainer)
    with pytest.raises(ValidationError) as error:
        services.ranking_submit(
            assignment=assignment,
            trainer=trainer,
            ranking=make_input(assignment.presentation_order),
        )
    assert field in error.value.message_dict
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.LEASED


def test_cannot_rank_needs_no_ordering(ready_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([], cannot_rank=True, rationale="all gibberish"),
    )
    assert ranking.cannot_rank and ranking.ordering == []


def test_pool_fill_creates_tasks_from_distinct_sources(policy, other_trainer, settings):
    for _ in range(3):
        finished_conversation(other_trainer)
    finished_conversation(other_trainer, origin="human")  # not model-written: never a source
    created = services.ranking_pool_fill(target=10, rng=random.Random(3))
    assert created == 3
    sources = RankingTask.objects.values_list("source_message_id", flat=True)
    assert len(set(sources)) == 3
    assert not Message.objects.filter(pk__in=sources, origin="human").exists()


def test_the_pool_grows_with_the_trainers_ranking_and_shrinks_back_when_they_stop(
    policy, other_trainer, settings
):
    from ranking.projects.selectors import project_default

    settings.RANKING_POOL_SIZE = 2
    settings.RANKING_TASKS_PER_ACTIVE_TRAINER = 3
    settings.RANKING_DEMAND_WINDOW_SECONDS = 900
    project = project_default()
    assert services.ranking_pool_wanted(project=project) == 2  # nobody ranking: the pool size
    for _ in range(3):
        source = finished_conversation(other_trainer).active_leaf
        task_from_source(source, model_version=policy, alternatives=2)
    for index in range(3):
        assert services.task_claim_next(trainer=quick_trainer(f"busy{index}")) is not None
    # Three trainers took a task in the window: 3 x 3 open tasks wanted, not 2.
    assert services.ranking_pool_wanted(project=project) == 9
    for _ in range(8):
        finished_conversation(other_trainer)
    assert services.ranking_pool_fill(rng=random.Random(2)) == 6
    assert RankingTask.objects.filter(project=project).count() == 9
    later = timezone.now() + timedelta(seconds=901)
    assert services.ranking_pool_wanted(project=project, now=later) == 2


# ---- presentation order -----------------------------------------------------------------------


def test_each_trainer_gets_an_order_of_their_own(quick_task):
    task = quick_task  # room for 10 trainers
    id_order = sorted(task.candidates.values_list("id", flat=True))
    source_id = task.candidates.get(is_source=True).pk
    orders = [
        services.task_claim_next(trainer=quick_trainer(f"ranker{index}")).presentation_order
        for index in range(10)
    ]
    assert all(sorted(order) == id_order for order in orders)
    # 4 replies have 24 orders: 10 trainers all seeing one order by chance is a 24**-9 event.
    assert len({tuple(order) for order in orders}) > 1
    assert any(order != id_order for order in orders)
    # Nor does the writer's own reply always come first (4**-10 by chance).
    assert any(order[0] != source_id for order in orders)


def test_coming_back_to_a_lease_shows_the_order_stored_at_claim_time(quick_task, trainer):
    lease = services.task_claim_next(trainer=trainer)
    stored = Assignment.objects.get(pk=lease.pk).presentation_order
    assert stored == lease.presentation_order
    texts = dict(lease.task.candidates.values_list("id", "message__content"))
    assert len(set(texts.values())) == len(texts)
    for _ in range(5):  # a reshuffle on each visit would repeat the order 1 time in 24
        again = services.task_claim_next(trainer=trainer)
        assert again.pk == lease.pk
        shown = [candidate["text"] for candidate in assignment_screen(assignment=again).candidates]
        assert shown == [texts[cid] for cid in stored]


# ---- time spent and leases --------------------------------------------------------------------


@pytest.mark.parametrize(
    "elapsed",
    [timedelta(seconds=83, milliseconds=17), timedelta(seconds=32, milliseconds=1)],
)
def test_duration_is_the_time_from_claim_to_submit_whatever_happens_in_between(
    quick_task, trainer, clock, elapsed
):
    claimed_at = clock.now
    assignment = services.task_claim_next(trainer=trainer)
    clock.advance(elapsed / 2)
    assert services.task_claim_next(trainer=trainer) == assignment  # a reload keeps the start
    clock.advance(elapsed / 2)
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    ranking.refresh_from_db()
    assert ranking.started_at == claimed_at
    assert ranking.submitted_at == claimed_at + elapsed
    assert ranking.duration_ms == elapsed // timedelta(milliseconds=1)


def test_a_late_submit_weeks_after_the_claim_is_stored_with_the_longest_duration_a_row_holds(
    quick_task, trainer, clock
):
    assignment = services.task_claim_next(trainer=trainer)
    # The lease ran out long ago, but the task still has room: the ranking is taken.
    clock.advance(timedelta(days=30))
    services.leases_expire()

    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput(_order(assignment), first_placement_ms=5_000),
    )

    ranking.refresh_from_db()
    # An integer column holds at most 2**31 - 1 ms (24.8 days); PostgreSQL refuses more.
    assert ranking.duration_ms == 2**31 - 1
    assert ranking.first_placement_ms == 5_000


def test_lease_lasts_the_configured_time_then_the_task_goes_to_another_trainer(
    quick_task, trainer, settings, clock
):
    settings.RANKING_LEASE_SECONDS = 90
    RankingTask.objects.filter(pk=quick_task.pk).update(overlap_required=1)
    third = quick_trainer("third")
    claimed_at = clock.now
    lease = services.task_claim_next(trainer=trainer)
    assert Assignment.objects.get(pk=lease.pk).expires_at == claimed_at + timedelta(seconds=90)

    clock.advance(timedelta(seconds=89))
    assert services.task_claim_next(trainer=third) is None  # the one slot is still held
    assert services.task_claim_next(trainer=trainer) == lease

    clock.advance(timedelta(seconds=2))
    taken = services.task_claim_next(trainer=third)
    assert taken is not None and taken.task_id == quick_task.pk
    assert Assignment.objects.get(pk=lease.pk).status == Assignment.Status.EXPIRED
    quick_task.refresh_from_db()
    assert quick_task.leased_count == 1


# ---- picking sources --------------------------------------------------------------------------


def _conversation_with_replies(owner, replies: int) -> Conversation:
    turns: list[str] = []
    for index in range(replies):
        turns += [f"question {index}?", f"answer {index}."]
    return finished_conversation(owner, turns=tuple(turns))


def _picks_per_conversation(draws: int) -> Counter:
    rng = random.Random(7)
    return Counter(
        ranking_source_pick(rng=rng, origins=["model"]).conversation_id for _ in range(draws)
    )


DRAWS = 300  # 6 conversations: a fair share is 50 draws, with a standard deviation of ~6.5


def test_source_pick_weights_conversations_equally_whatever_their_length(other_trainer):
    long = _conversation_with_replies(other_trainer, replies=30)
    short = [_conversation_with_replies(other_trainer, replies=1) for _ in range(5)]
    picks = _picks_per_conversation(DRAWS)
    fair = DRAWS / 6
    assert picks[long.pk] < 2 * fair  # weighted by message it would get 30/35 of the draws
    assert all(picks[conversation.pk] > fair / 2 for conversation in short)


def test_source_pick_is_not_tilted_by_the_ids_of_ineligible_conversations(other_trainer):
    short = [_conversation_with_replies(other_trainer, replies=1) for _ in range(5)]
    # Drafts still being written, conversations written without the model and conversations
    # used up already take ids too.
    for _ in range(6):
        Conversation.objects.create(owner=other_trainer)
    for _ in range(4):
        finished_conversation(other_trainer, origin="human")
    version = model_version_create("policy-a")
    for _ in range(3):  # used up: their one reply is the source of a task already
        task_from_source(finished_conversation(other_trainer).active_leaf, model_version=version)
    after_the_gap = _conversation_with_replies(other_trainer, replies=1)
    picks = _picks_per_conversation(DRAWS)
    fair = DRAWS / 6
    assert picks[after_the_gap.pk] < 2 * fair
    assert all(picks[conversation.pk] > fair / 2 for conversation in short)


def test_source_pick_stays_fair_when_eligible_conversations_are_sparse(other_trainer):
    # 3 eligible conversations among ~150 ids: most seeks are refused and the exact fallback
    # (a uniform draw by offset) decides; the two after the long run must not take it all.
    first = _conversation_with_replies(other_trainer, replies=1)
    for _ in range(150):
        finished_conversation(other_trainer, origin="human")
    late = [_conversation_with_replies(other_trainer, replies=1) for _ in range(2)]
    rng = random.Random(3)
    picks = Counter(
        ranking_source_pick(rng=rng, origins=["model"], attempts=2).conversation_id
        for _ in range(240)
    )
    assert set(picks) == {first.pk, *(c.pk for c in late)}
    assert all(40 < picks[pk] < 120 for pk in picks)  # fair share 80, sd ~7


def test_source_pick_draws_again_when_its_conversation_is_used_up_meanwhile(
    other_trainer, monkeypatch
):
    from labeling.conversations import selectors

    gone = _conversation_with_replies(other_trainer, replies=1)
    kept = _conversation_with_replies(other_trainer, replies=1)
    seeks = iter([gone.pk, kept.pk])
    # As if another task creation took gone's only reply between the seek and the read.
    gone.messages.filter(role="assistant").update(origin="human")
    monkeypatch.setattr(selectors, "_seek_conversation", lambda **kwargs: next(seeks))

    picked = ranking_source_pick(rng=random.Random(0), origins=["model"])

    assert picked.conversation_id == kept.pk


# ---- verdicts, the order shown, taking a ranking back -----------------------------------------


def test_a_ranking_records_whether_it_kept_the_order_shown(quick_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    ids = assignment.presentation_order

    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([[cid] for cid in ids], first_placement_ms=10**9),
    )

    assert ranking.order_unchanged is True and ranking.verdict == "ranked"
    # The browser's figure never exceeds the time the server measured.
    assert ranking.first_placement_ms == ranking.duration_ms


def test_a_tie_is_a_change_to_the_order_shown_even_between_neighbours_in_it(quick_task, trainer):
    """Shown a, b, c: "a = b > c" and "b = a > c" keep no order as it was shown; the
    quality page's share of untouched orders must not count them."""
    assignment = services.task_claim_next(trainer=trainer)
    a, b, *rest = assignment.presentation_order
    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([[a, b], *[[cid] for cid in rest]]),
    )
    assert ranking.order_unchanged is False


@pytest.mark.parametrize("verdict", ["all_equal", "all_bad", "cannot_rank"])
def test_a_verdict_needs_a_reason(quick_task, trainer, verdict):
    assignment = services.task_claim_next(trainer=trainer)

    with pytest.raises(ValidationError, match="Say why"):
        services.ranking_submit(
            assignment=assignment, trainer=trainer, ranking=RankingInput([], verdict=verdict)
        )


def test_all_equally_good_is_one_tie_group_in_the_order_shown(quick_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)

    ranking = services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([], verdict="all_equal", rationale="same facts, same tone"),
    )

    assert ranking.ordering == [assignment.presentation_order]
    assert ranking.cannot_rank is False and ranking.order_unchanged is None


def test_undo_deletes_the_ranking_recounts_the_task_and_gives_the_task_back(
    quick_task, trainer, other_trainer, settings, clock
):
    settings.RANKING_UNDO_SECONDS = 10
    quick_task.overlap_required = 1
    quick_task.save()
    assignment = services.task_claim_next(trainer=trainer)
    assert assignment.task_id == quick_task.pk
    # The task shown next: made after the first claim, so the claim cannot pick it first.
    second = task_from_source(
        finished_conversation(other_trainer).active_leaf, model_version=quick_task.model_version
    )
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    quick_task.refresh_from_db()
    assert (quick_task.status, quick_task.rankings_count) == (RankingTask.Status.COMPLETE, 1)
    next_lease = services.task_claim_next(trainer=trainer)  # the next task, shown after submit
    assert next_lease.task_id == second.pk
    clock.advance(timedelta(seconds=10))

    restored = services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)

    assert restored.pk == assignment.pk and restored.status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()
    quick_task.refresh_from_db()
    assert (quick_task.status, quick_task.rankings_count, quick_task.leased_count) == (
        RankingTask.Status.READY,
        0,
        1,
    )
    # The next task's lease was handed back; the trainer is on the task they took back.
    assert not Assignment.objects.filter(pk=next_lease.pk).exists()
    second.refresh_from_db()
    assert second.leased_count == 0
    assert services.task_claim_next(trainer=trainer) == restored


def test_undo_is_open_until_the_end_of_the_window_for_the_ranker_only(
    quick_task, trainer, other_trainer, settings, clock
):
    """What the page's no-JS Undo goes by agrees with what ranking_undo accepts."""
    settings.RANKING_UNDO_SECONDS = 10
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    closes_at = ranking.submitted_at + timedelta(seconds=10)

    clock.advance(timedelta(seconds=10))
    assert ranking_undo_open_until(ranking_id=ranking.pk, trainer=trainer) == closes_at
    assert ranking_undo_open_until(ranking_id=ranking.pk, trainer=other_trainer) is None
    clock.advance(timedelta(microseconds=1))
    assert ranking_undo_open_until(ranking_id=ranking.pk, trainer=trainer) is None
    with pytest.raises(RankingConflict, match="Too late"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)


def test_undo_gives_back_only_leases_taken_since_the_ranking_not_one_held_in_another_project(
    quick_task, trainer, other_trainer, settings, clock
):
    settings.RANKING_UNDO_SECONDS = 10
    held = services.task_claim_next(trainer=trainer, project=project_default())
    assert held.task_id == quick_task.pk
    other = project_create(name="Other", slug="other", status=Project.Status.ACTIVE)
    elsewhere = task_from_source(
        finished_conversation(other_trainer).active_leaf, model_version=quick_task.model_version
    )
    RankingTask.objects.filter(pk=elsewhere.pk).update(project=other)
    clock.advance(timedelta(seconds=1))
    assignment = services.task_claim_next(trainer=trainer, project=other)
    assert assignment.task_id == elsewhere.pk
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )

    services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)

    # The lease the trainer held before that ranking, in the other project, is still theirs.
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.LEASED
    quick_task.refresh_from_db()
    assert quick_task.leased_count == 1
    assert services.task_claim_next(trainer=trainer, project=project_default()) == held


def test_a_ranking_submitted_again_after_undo_counts_the_time_since_the_claim(
    quick_task, trainer, settings, clock
):
    settings.RANKING_UNDO_SECONDS = 10
    claimed_at = clock.now
    assignment = services.task_claim_next(trainer=trainer)
    clock.advance(timedelta(seconds=40))
    answer = RankingInput(_order(assignment), first_placement_ms=6000)
    ranking = services.ranking_submit(assignment=assignment, trainer=trainer, ranking=answer)
    clock.advance(timedelta(seconds=3))
    restored = services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)
    clock.advance(timedelta(seconds=2))

    again = services.ranking_submit(assignment=restored, trainer=trainer, ranking=answer)

    again.refresh_from_db()
    assert again.started_at == claimed_at
    assert again.duration_ms == 45_000
    # The first placement the form brings back is the one measured, not cut to 2 s.
    assert again.first_placement_ms == 6000


def test_undo_after_the_window_is_refused_and_keeps_the_ranking(
    quick_task, trainer, settings, clock
):
    settings.RANKING_UNDO_SECONDS = 10
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    clock.advance(timedelta(seconds=11))

    with pytest.raises(RankingConflict, match="Too late"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)
    assert Ranking.objects.filter(pk=ranking.pk).exists()


def test_nobody_ranks_or_skips_a_task_leased_to_another_trainer(quick_task, trainer):
    assignment = services.task_claim_next(trainer=trainer)
    stranger = quick_trainer("stranger")

    with pytest.raises(ValidationError, match="not assigned to you"):
        services.ranking_submit(
            assignment=assignment, trainer=stranger, ranking=RankingInput(_order(assignment))
        )
    with pytest.raises(ValidationError, match="not assigned to you"):
        services.assignment_skip(assignment=assignment, trainer=stranger)
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.LEASED
    assert not Ranking.objects.exists()


def test_nobody_takes_back_another_trainers_ranking(quick_task, trainer, other_trainer):
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )

    with pytest.raises(RankingConflict):
        services.ranking_undo(ranking_id=ranking.pk, trainer=other_trainer)
    assert Ranking.objects.filter(pk=ranking.pk).exists()


def test_a_ranking_taken_back_twice_is_refused_the_second_time_saying_so(
    quick_task, trainer, other_trainer, settings
):
    """Two undos of one ranking at once (the second waits for the first): the second is told
    the ranking was taken back already; anyone else still hears there is none of theirs."""
    settings.RANKING_UNDO_SECONDS = 600
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput(_order(assignment))
    )
    services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)

    with pytest.raises(RankingConflict, match="You already took this ranking back"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)
    with pytest.raises(RankingConflict, match="There is no ranking of yours to take back"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=other_trainer)
    assert Assignment.objects.get(pk=assignment.pk).status == Assignment.Status.LEASED


def test_a_retried_preparation_prepares_its_task_again(policy, other_trainer, settings):
    """A preparation that gave up released its task (failed); retrying the job (an admin, the
    API, ``retry_job``) brings the task back and gives it its candidates."""
    from sampler.generation.models import GenerationJob
    from sampler.jobs.services import job_fail, job_retry, job_run_inline

    settings.RANKING_MAX_NEW_TOKENS = 12
    finished_conversation(other_trainer)
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    job_fail(job=GenerationJob.objects.get(pk=task.generation_job_id), error="server down")
    task.refresh_from_db()
    assert (task.status, task.error) == (RankingTask.Status.FAILED, "server down")
    assert not task.holds_source  # given back: another task may be made of it

    job_retry(job=GenerationJob.objects.get(pk=task.generation_job_id))
    task.refresh_from_db()
    assert (task.status, task.error) == (RankingTask.Status.PREPARING, "")
    # Its own again: no other task is made of it while this one is prepared.
    assert task.holds_source
    assert services.ranking_task_create(rng=random.Random(0), queue=False) is None
    job_run_inline(job=GenerationJob.objects.get(pk=task.generation_job_id))
    task.refresh_from_db()
    assert task.status == RankingTask.Status.READY
    assert task.candidates.count() == 4


def test_a_nul_in_the_rationale_or_a_flag_note_is_refused_on_its_field(ready_task, trainer):
    """The service refuses what the database cannot store, whatever door it came through."""
    assignment = services.task_claim_next(trainer=trainer)
    ids = assignment.presentation_order
    ranking = services.RankingInput(
        ordering=[[i] for i in ids],
        rationale="why\x00",
        flags={ids[1]: ["other"], ids[2]: ["other"]},
        flag_notes={ids[1]: "odd\x00", ids[2]: "odd\ud800"},
    )
    with pytest.raises(ValidationError) as refused:
        services.ranking_submit(assignment=assignment, trainer=trainer, ranking=ranking)
    # The reply is named by the number it is shown under, never by its candidate id (which
    # would tell a blind ranking's rows); the first such reply when several are.
    assert refused.value.message_dict == {
        "rationale": [NUL_MESSAGE],
        "flag_notes": [f"The flag note of reply 2: {NUL_MESSAGE}"],
    }


def test_an_unstorable_flag_note_on_the_shown_path_names_the_reply_by_its_number(
    ready_task, trainer
):
    assignment = services.task_claim_next(trainer=trainer)
    ranking = services.RankingInput(
        ordering=[[1], [2], [3], [4]], flags={3: ["other"]}, flag_notes={3: "odd\ud800"}
    )
    with pytest.raises(ValidationError) as refused:
        services.ranking_submit_shown(assignment=assignment, trainer=trainer, ranking=ranking)
    assert refused.value.message_dict == {
        "flag_notes": [f"The flag note of reply 3: {SURROGATE_MESSAGE}"]
    }
    assert not Ranking.objects.exists()


# ---- a source whose preparation failed --------------------------------------------------------


def _task_unqueued(owner):
    """A preparing task (its job never queued) from a new finished conversation of ``owner``."""
    finished_conversation(owner)
    return services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )


def _fail_preparation(task, error="server down"):
    from sampler.generation.models import GenerationJob
    from sampler.jobs.services import job_fail

    job_fail(job=GenerationJob.objects.get(pk=task.generation_job_id), error=error)
    task.refresh_from_db()
    assert task.status == RankingTask.Status.FAILED


def test_a_source_whose_preparation_failed_is_picked_again(policy, other_trainer):
    task = _task_unqueued(other_trainer)
    _fail_preparation(task)

    picked = ranking_source_pick(rng=random.Random(0), origins=["model"])

    assert picked is not None and picked.pk == task.source_message_id
    again = services.ranking_task_create(rng=random.Random(0), queue=False)
    assert again is not None and again.source_message_id == task.source_message_id


def test_a_source_whose_preparation_was_cancelled_is_picked_again(policy, other_trainer):
    from sampler.generation.models import GenerationJob
    from sampler.jobs.services import job_cancel

    task = _task_unqueued(other_trainer)
    job_cancel(job=GenerationJob.objects.get(pk=task.generation_job_id))

    picked = ranking_source_pick(rng=random.Random(0), origins=["model"])

    assert picked is not None and picked.pk == task.source_message_id


def test_a_source_orphaned_by_its_deleted_job_is_picked_again(policy, other_trainer):
    task = _task_unqueued(other_trainer)
    task.generation_job.delete()  # the task keeps its row, its job set to null
    services.ranking_tasks_release_orphans()

    picked = ranking_source_pick(rng=random.Random(0), origins=["model"])

    assert picked is not None and picked.pk == task.source_message_id


def test_a_source_that_keeps_failing_is_given_up_after_its_tries(policy, other_trainer):
    task = _task_unqueued(other_trainer)
    for _ in range(services.SOURCE_PREPARATION_TRIES - 1):
        _fail_preparation(task)
        task = services.ranking_task_create(rng=random.Random(0), queue=False)
        assert task is not None
    _fail_preparation(task)

    assert ranking_source_pick(rng=random.Random(0), origins=["model"]) is None


def test_a_source_flagged_by_the_content_filter_is_not_picked_again(
    settings, policy, other_trainer
):
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_PATTERNS = {"everything": [r"[\s\S]"]}
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    settings.RANKING_MAX_NEW_TOKENS = 4
    task = _task_unqueued(other_trainer)
    # Greedy, so no alternative is an empty reply (which the filter has nothing to flag in).
    job = task.generation_job
    job.params = {**job.params, "top_k": 1}
    job.save(update_fields=["params"])
    task = services.ranking_task_prepare(task_id=task.pk)
    assert all(sample.text for sample in job.samples.all())
    assert task.status == RankingTask.Status.FAILED
    assert "content filter" in task.error

    assert ranking_source_pick(rng=random.Random(0), origins=["model"]) is None


def test_a_retried_preparation_whose_source_was_taken_again_stays_failed(policy, other_trainer):
    from sampler.generation.models import GenerationJob
    from sampler.jobs.services import job_retry

    task = _task_unqueued(other_trainer)
    _fail_preparation(task)
    again = services.ranking_task_create(rng=random.Random(0), queue=False)
    assert again.source_message_id == task.source_message_id

    job_retry(job=GenerationJob.objects.get(pk=task.generation_job_id))

    task.refresh_from_db()
    assert task.status == RankingTask.Status.FAILED  # one task per source, not two
    assert (
        RankingTask.objects.filter(
            source_message_id=task.source_message_id, status=RankingTask.Status.PREPARING
        ).count()
        == 1
    )


def test_releasing_orphans_gives_their_sources_back_in_queries_that_do_not_grow_with_them(
    policy, other_trainer
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def release(count):
        tasks = [_task_unqueued(other_trainer) for _ in range(count)]
        for task in tasks:
            task.generation_job.delete()
        with CaptureQueriesContext(connection) as queries:
            assert services.ranking_tasks_release_orphans() == count
        for task in tasks:
            task.refresh_from_db()
            assert task.status == RankingTask.Status.FAILED and not task.holds_source
        return len(queries)

    assert release(1) == release(4)


@pytest.mark.django_db
def test_a_second_task_holding_a_source_is_refused_by_the_database(other_trainer):
    """One task per source is the services' rule (under the project's lock) and the
    database's: a second task holding the same source cannot be stored, one that has given it
    back can."""
    from django.db import IntegrityError, transaction

    source = finished_conversation(other_trainer).messages.get(role=Message.Role.ASSISTANT)
    task = task_from_source(source, model_version=model_version_create("policy"))
    fields = {
        "source_message": source,
        "prefix_message": source.parent,
        "model_version": task.model_version,
        "source_owner": other_trainer,
        "status": RankingTask.Status.FAILED,
    }
    with pytest.raises(IntegrityError), transaction.atomic():
        RankingTask.objects.create(**fields)
    RankingTask.objects.create(**fields, holds_source=False)
    assert RankingTask.objects.filter(source_message=source).count() == 2


def test_the_undo_memos_are_indexed_by_when_they_were_removed(db):
    """The hourly prune (undo_removals_delete_expired) deletes by removed_at alone, which no
    index covered: each run read the whole table. The migrated database has one on it."""
    from django.db import connection

    from ranking.rank.models import UndoRemoval

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, UndoRemoval._meta.db_table)
    assert any(
        found["index"] and found["columns"] == ["removed_at"] for found in constraints.values()
    ), constraints


def test_an_id_an_undo_removed_may_be_removed_again_and_the_memo_goes_with_its_trainer(
    trainer, other_trainer
):
    """A database may issue a deleted row's id again (SQLite does once a migration rebuilds the
    table): the undo of the new row is recorded too, not refused by a unique id. Deleting a
    trainer takes their memo of removed rows with them."""
    from ranking.rank.models import UndoRemoval
    from ranking.rank.selectors import assignment_removed_by_undo

    now = timezone.now()
    for user in (trainer, other_trainer, trainer):
        UndoRemoval.objects.create(trainer=user, assignment_id=7, removed_at=now)
        UndoRemoval.objects.create(trainer=user, ranking_id=7, removed_at=now)
    assert assignment_removed_by_undo(assignment_id=7, trainer=other_trainer)
    other_trainer.delete()
    assert UndoRemoval.objects.filter(trainer=trainer).count() == 4
    assert UndoRemoval.objects.count() == 4


def _two_tasks_of_the_writer(writer) -> tuple[RankingTask, RankingTask]:
    """Two ready tasks on two finished conversations of ``writer``'s, oldest first (the one a
    claim takes first)."""
    version = model_version_create("p")
    return tuple(
        task_from_source(
            finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf,
            model_version=version,
        )
        for index in range(2)
    )


def _writer_reopens(task: RankingTask, *, discard: bool = False) -> Conversation:
    """The writer reopens ``task``'s conversation (and discards it), as the editor does."""
    conversation = task.source_message.conversation
    writer = conversation.owner
    conversation = labeling_services.conversation_reopen(conversation=conversation, user=writer)
    if discard:
        conversation = labeling_services.conversation_discard(
            conversation=conversation, user=writer
        )
    return conversation


def test_claims_skip_the_tasks_of_a_discarded_conversation(other_trainer, trainer, client):
    discarded, kept = _two_tasks_of_the_writer(other_trainer)
    assert _writer_reopens(discarded, discard=True).status == Conversation.Status.DISCARDED

    assert services.task_claim_next(trainer=trainer).task == kept
    assert ranking_summary_for_trainer(trainer=quick_trainer("fresh"))["ready"] == 1
    # Through the API, as a trainer claims there: the discarded conversation's task is never
    # leased (nothing left but it: no task, and why).
    client.force_login(quick_trainer("api"))
    first = client.post("/api/ranking/claim/?project=default")
    assert first.status_code == 200 and first.json()["task_id"] == kept.pk
    RankingTask.objects.filter(pk=kept.pk).update(status=RankingTask.Status.COMPLETE)
    client.force_login(quick_trainer("api2"))
    none_left = client.post("/api/ranking/claim/?project=default")
    assert none_left.status_code == 204
    assert none_left.headers["Tandem-Waiting-Reason"] == "no_conversations"
    assert not Assignment.objects.filter(task=discarded).exists()
    discarded.refresh_from_db()
    assert (discarded.status, discarded.leased_count) == (RankingTask.Status.READY, 0)


def test_claims_skip_the_tasks_of_a_reopened_conversation_until_it_is_finished_again(
    other_trainer, trainer
):
    reopened, kept = _two_tasks_of_the_writer(other_trainer)
    conversation = _writer_reopens(reopened)
    assert conversation.status == Conversation.Status.DRAFT
    assert list(ranking_pool_open_tasks(projects=[reopened.project_id])) == [kept]

    assert services.task_claim_next(trainer=trainer).task == kept
    assert services.task_claim_next(trainer=quick_trainer("second")).task == kept

    # Finished again (its turns unchanged: an edit is a new branch), its task is back, as it
    # was: the same task, its candidates, its prefix.
    labeling_services.conversation_finish(conversation=conversation, user=other_trainer)
    assert services.task_claim_next(trainer=quick_trainer("third")).task == reopened
    assert set(ranking_pool_open_tasks(projects=[reopened.project_id])) == {reopened, kept}


@pytest.mark.parametrize("closed_by", ["reopen", "discard", "pause"])
def test_a_claim_that_can_no_longer_take_a_ranking_takes_no_skip_either(
    other_trainer, trainer, client, closed_by
):
    """A submit on a task whose conversation was reopened or discarded since, or whose project
    was paused, is a 409; a skip there was a 200, recording a skip (a skip reason, counted in
    the Quality page's habits) on a task no claim offers. The page, the API and the service
    refuse it in the submit's words, and the lease is given back by the next claim as before."""
    closed, _ = _two_tasks_of_the_writer(other_trainer)
    held = services.task_claim_next(trainer=trainer)
    assert held.task == closed
    if closed_by == "pause":
        Project.objects.filter(pk=closed.project_id).update(status=Project.Status.PAUSED)
        said = (
            "This task's project is paused or no longer open to you, so there is nothing to skip."
        )
    else:
        _writer_reopens(closed, discard=closed_by == "discard")
        said = (
            "The conversation this task was made from was reopened or discarded by its writer, "
            "so there is nothing to skip. Take the next task."
        )

    with pytest.raises(RankingConflict) as refused:
        services.assignment_skip(assignment=held, trainer=trainer, reason="off topic")
    assert said in str(refused.value)
    client.force_login(trainer)
    api = client.post(
        f"/api/ranking/assignments/{held.pk}/skip/",
        {"reason": "off topic"},
        content_type="application/json",
    )
    assert api.status_code == 409 and said in api.json()["detail"]
    page = client.post(
        reverse("ranking:skip", args=[held.pk]),
        {"skip_reason": "off topic"},
        HTTP_HX_REQUEST="true",
    )
    assert page.status_code == 409 and said in unescape(page.content.decode())
    held.refresh_from_db()
    closed.refresh_from_db()
    assert (held.status, held.skip_reason, closed.leased_count) == ("leased", "", 1)


def test_a_lease_on_a_task_whose_conversation_was_discarded_since_is_given_back_and_takes_no_ranking(  # noqa: E501
    other_trainer, trainer, client
):
    discarded, kept = _two_tasks_of_the_writer(other_trainer)
    held = services.task_claim_next(trainer=trainer)
    assert held.task == discarded
    _writer_reopens(discarded, discard=True)

    # The Rank page no longer shows it; submitting on it is refused, saying why.
    client.force_login(trainer)
    assert "data-assignment-id" not in client.get(reverse("ranking:rank")).content.decode()
    with pytest.raises(RankingConflict, match="reopened or discarded by its writer"):
        services.ranking_submit(
            assignment=held, trainer=trainer, ranking=RankingInput(_order(held))
        )
    refused = client.post(
        f"/api/ranking/assignments/{held.pk}/submit/",
        {"ordering": [[1], [2], [3], [4]]},
        content_type="application/json",
    )
    assert refused.status_code == 409 and "discarded" in refused.json()["detail"]
    assert not Ranking.objects.exists()

    # The next claim gives its lease back and leases the other task: one live lease.
    moved = services.task_claim_next(trainer=trainer)
    assert moved.task == kept
    held.refresh_from_db()
    discarded.refresh_from_db()
    assert (held.status, discarded.leased_count) == (Assignment.Status.EXPIRED, 0)
    assert list(trainer.ranking_assignments.filter(status="leased")) == [moved]

    # A ranking whose conversation is reopened after it was submitted is kept, and cannot be
    # taken back while the conversation is not finished (it could not be submitted again).
    ranking = services.ranking_submit(
        assignment=moved, trainer=trainer, ranking=RankingInput(_order(moved))
    )
    _writer_reopens(kept)
    with pytest.raises(RankingConflict, match="kept as submitted"):
        services.ranking_undo(ranking_id=ranking.pk, trainer=trainer)
    assert Ranking.objects.filter(pk=ranking.pk).exists()
