import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from config.text import LINE_MESSAGE
from labeling.conversations import services
from labeling.conversations.models import Conversation, Draft, Message
from labeling.conversations.selectors import conversation_transcript
from sampler.generation import services as sampler_services
from sampler.models import GenerationJob, Sample
from tests.labeling.conftest import write_turns
from tests.labeling.conversations.conftest import MULTI_LINE_TITLES


def test_turns_alternate_starting_with_the_user(conversation, trainer):
    first, second, third = write_turns(conversation, trainer, "hi", "hello!", "how are you?")
    assert [first.role, second.role, third.role] == ["user", "assistant", "user"]
    assert second.parent == first and third.parent == second
    with pytest.raises(ValidationError, match="assistant's"):
        services.message_append(conversation=conversation, author=trainer, content="x", role="user")


def test_empty_and_oversized_messages_are_refused(conversation, trainer):
    with pytest.raises(ValidationError, match="empty"):
        services.message_append(conversation=conversation, author=trainer, content="   ")
    with pytest.raises(ValidationError, match="20000"):
        services.message_append(conversation=conversation, author=trainer, content="x" * 20001)
    assert Message.objects.count() == 0


def test_another_trainer_cannot_write_into_a_conversation(conversation, other_trainer):
    with pytest.raises(PermissionDenied):
        services.message_append(conversation=conversation, author=other_trainer, content="hi")


def _suggestion(conversation, trainer, policy):
    job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    return (
        sampler_services.generation_job_run_inline(job_id=job.pk).samples.order_by("index").first()
    )


def test_used_suggestion_records_origin_sample_and_edit_distance(conversation, trainer, policy):
    write_turns(conversation, trainer, "hello there")
    sample = _suggestion(conversation, trainer, policy)
    assert sample.job.purpose == GenerationJob.Purpose.SUGGESTION
    assert sample.job.prompt_messages == [{"role": "user", "content": "hello there"}]
    # A random micro model may end its turn at once; an empty reply cannot be sent as is.
    Sample.objects.filter(pk=sample.pk, text="").update(text="Sure, the lake it is.")
    sample.refresh_from_db()
    assert sample.text

    as_is = services.message_append(
        conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
    )
    assert as_is.role == "assistant"
    assert as_is.origin == Message.Origin.MODEL and as_is.edit_distance == 0
    assert as_is.content == sample.text
    assert as_is.sample == sample and as_is.model_version == policy

    edited = services.message_branch(
        original=as_is, author=trainer, content=(sample.text + " Edited!"), sample_id=sample.pk
    )
    assert edited.origin == Message.Origin.MODEL_EDITED
    assert edited.edit_distance == len(" Edited!")
    assert edited.parent_id == as_is.parent_id
    # "Edit into a new branch" names no suggestion: the turn's own is measured against.
    branched = services.message_branch(
        original=edited, author=trainer, content=(sample.text + " More!")
    )
    assert branched.origin == Message.Origin.MODEL_EDITED and branched.sample == sample
    assert branched.edit_distance == len(" More!") and branched.model_version == policy

    # Rewritten rather than edited (under a quarter of its words kept): the trainer's own text.
    Sample.objects.filter(pk=sample.pk).update(text="Sure, the lake it is, with a picnic at noon.")
    rewritten = services.message_branch(
        original=as_is,
        author=trainer,
        content="I would rather stay home and read a book today.",
        sample_id=sample.pk,
    )
    assert rewritten.origin == Message.Origin.HUMAN
    assert rewritten.sample is None and rewritten.model_version is None
    kept = services.message_branch(
        original=as_is,
        author=trainer,
        content="Sure, the lake it is, with lunch at one.",
        sample_id=sample.pk,
    )
    assert kept.origin == Message.Origin.MODEL_EDITED and kept.sample_id == sample.pk


def test_user_side_suggestion_for_the_first_turn(conversation, trainer, policy):
    job = services.suggestion_request(conversation=conversation, author=trainer, n=2)
    assert job.role == "user" and job.prompt_messages == []
    assert sampler_services.generation_job_run_inline(job_id=job.pk).samples.count() == 2


def test_suggestion_of_someone_else_cannot_be_claimed(conversation, trainer, other_trainer, policy):
    other = services.conversation_create(owner=other_trainer)
    write_turns(other, other_trainer, "hey")
    write_turns(conversation, trainer, "hello")
    sample = _suggestion(other, other_trainer, policy)
    with pytest.raises(ValidationError, match="No suggestion of yours with that id"):
        services.message_append(
            conversation=conversation, author=trainer, content="x", sample_id=sample.pk
        )


def _made_sample(job, text="Tell me about the sea.") -> Sample:
    return Sample.objects.create(
        job=job, index=0, text=text, token_count=5, finish_reason=Sample.FinishReason.END_OF_TURN
    )


def test_first_turn_refuses_a_sample_made_for_another_prompt(
    conversation, trainer, unrelated_sample
):
    sample = unrelated_sample
    for write in (
        lambda: services.message_append(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        ),
        lambda: services.draft_save(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        ),
    ):
        with pytest.raises(ValidationError, match="made for another turn"):
            write()
    assert not Message.objects.filter(conversation=conversation).exists()


def test_first_turn_refuses_a_suggestion_whose_prefix_was_deleted(conversation, trainer, policy):
    other = services.conversation_create(owner=trainer)
    write_turns(other, trainer, "hi", "hello!")
    job = services.suggestion_request(conversation=other, author=trainer, n=1)
    sample = _made_sample(job, text="And what about you?")
    other.delete()  # the job's prefix message goes with it (set to null)
    job.refresh_from_db()
    assert job.prefix_message_id is None and job.role == "user"
    with pytest.raises(ValidationError, match="made for another turn"):
        services.message_append(
            conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
        )


def test_first_turn_takes_the_suggestion_asked_for_it(conversation, trainer, policy):
    job = services.suggestion_request(conversation=conversation, author=trainer, n=1)
    sample = _made_sample(job)
    first = services.message_append(
        conversation=conversation, author=trainer, content=sample.text, sample_id=sample.pk
    )
    assert first.origin == Message.Origin.MODEL and first.sample == sample


def test_editing_an_earlier_turn_makes_a_branch_and_keeps_the_original(conversation, trainer):
    first, reply, follow_up = write_turns(conversation, trainer, "hi", "hello!", "tell me a joke")
    branch = services.message_branch(original=reply, author=trainer, content="hey, what's up?")
    conversation.refresh_from_db()
    transcript = conversation_transcript(conversation=conversation)
    assert [e.message for e in transcript] == [first, branch]
    assert (transcript[1].sibling_index, transcript[1].sibling_count) == (2, 2)
    assert transcript[1].previous_sibling_id == reply.pk
    assert Message.objects.filter(pk__in=[reply.pk, follow_up.pk]).count() == 2

    services.branch_switch(message=reply, user=trainer)
    conversation.refresh_from_db()
    assert [e.message for e in conversation_transcript(conversation=conversation)] == [
        first,
        reply,
        follow_up,
    ]


def test_unchanged_edit_is_refused(conversation, trainer):
    (first,) = write_turns(conversation, trainer, "hi")
    with pytest.raises(ValidationError, match="Nothing changed"):
        services.message_branch(original=first, author=trainer, content="hi")


def test_an_edit_sent_twice_makes_one_branch(conversation, trainer):
    first, reply = write_turns(conversation, trainer, "hi", "hello!")
    branch = services.message_branch(original=reply, author=trainer, content="hey there")

    # The second post of a double-clicked "Save as a new branch" still names the first reply.
    with pytest.raises(ValidationError, match="already has an alternative with this text"):
        services.message_branch(original=reply, author=trainer, content=" hey there ")

    assert list(first.children.order_by("pk")) == [reply, branch]
    conversation.refresh_from_db()
    assert conversation.active_leaf == branch


def test_drafts_upsert_and_are_cleared_when_the_turn_is_sent(conversation, trainer):
    services.draft_save(conversation=conversation, author=trainer, content="half a")
    services.draft_save(conversation=conversation, author=trainer, content="half a thought")
    assert Draft.objects.get().content == "half a thought"
    write_turns(conversation, trainer, "half a thought")
    assert Draft.objects.count() == 0


def test_finish_needs_both_sides_and_locks_editing(conversation, trainer):
    write_turns(conversation, trainer, "hi")
    with pytest.raises(ValidationError, match="one user and one assistant"):
        services.conversation_finish(conversation=conversation, user=trainer)
    write_turns(conversation, trainer, "hello!")
    services.conversation_finish(conversation=conversation, user=trainer)
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.FINISHED and conversation.finished_at
    with pytest.raises(ValidationError, match="reopen"):
        write_turns(conversation, trainer, "more")
    services.conversation_reopen(conversation=conversation, user=trainer)
    write_turns(conversation, trainer, "more")


def test_finish_refused_says_the_turns_are_missing_on_the_branch_shown(conversation, trainer):
    """The check reads the branch shown: turns on another branch do not count, and the message
    says where the turns are missing."""
    question, _ = write_turns(conversation, trainer, "hi", "hello!")
    services.message_branch(original=question, author=trainer, content="hi again")
    with pytest.raises(ValidationError) as refused:
        services.conversation_finish(conversation=conversation, user=trainer)
    assert refused.value.messages == [
        "A finished conversation needs at least one user and one assistant turn on the branch "
        "shown (turns on other branches do not count)."
    ]
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.DRAFT


def test_a_branch_takes_no_more_turns_than_an_import_reads_back(monkeypatch, trainer):
    """What the editor writes can be exported and imported again: both stop at the same length."""
    from labeling.conversations import importing

    monkeypatch.setattr(services, "MAX_PATH_MESSAGES", 3)
    monkeypatch.setattr(importing, "MAX_PATH_MESSAGES", 3)
    conversation = services.conversation_create(owner=trainer)
    for text in ("Hi", "Hello!", "How are you?"):
        services.message_append(conversation=conversation, author=trainer, content=text)
    with pytest.raises(ValidationError, match="at most 3 turns on one branch"):
        services.message_append(conversation=conversation, author=trainer, content="Fine.")
    assert conversation.messages.count() == 3
    # The last turn can still be edited: its branch is no longer.
    last = conversation.messages.get(content="How are you?")
    branch = services.message_branch(original=last, author=trainer, content="And you?")
    assert branch.parent_id == last.parent_id


def test_the_depth_of_a_message_counts_its_path_from_the_root(conversation, trainer):
    from labeling.conversations.selectors import message_depth, message_path

    first, second, third = write_turns(conversation, trainer, "hi", "hello!", "how are you?")
    branch = services.message_branch(original=second, author=trainer, content="hey!")
    for message in (first, second, third, branch):
        assert message_depth(message=message) == len(message_path(message=message))
    assert [message_depth(message=m) for m in (first, second, third, branch)] == [1, 2, 3, 2]


def _imported_model_reply(trainer) -> Message:
    """The model's reply of an imported conversation of ``trainer``'s, reopened for editing."""
    reply = "Sure, the lake it is, with a picnic at noon."
    report = services.conversations_import(
        lines=[
            '{"messages": [{"role": "user", "content": "Plans?"}, '
            f'{{"role": "assistant", "content": "{reply}"}}]}}'
        ],
        owner=trainer,
    )
    conversation = Conversation.objects.get(pk=report.conversation_ids[0])
    services.conversation_reopen(conversation=conversation, user=trainer)
    return conversation.messages.get(role="assistant")


def test_an_edit_of_an_imported_model_reply_is_model_edited_until_rewritten(trainer):
    """A model-written turn brought in by an import has no sample here; an edit of it is
    measured against its text by the suggestions' rule: a corrected reply is ``model_edited``
    (not a human demonstration), one keeping under a quarter of its words is the trainer's."""
    imported = _imported_model_reply(trainer)
    assert imported.origin == Message.Origin.MODEL and imported.sample is None

    corrected = services.message_branch(
        original=imported, author=trainer, content="Sure, the lake it is, with a picnic at one."
    )
    assert corrected.origin == Message.Origin.MODEL_EDITED
    assert corrected.edit_distance == 3 and corrected.sample is None  # noon -> one
    rewritten = services.message_branch(
        original=imported, author=trainer, content="I would rather stay home and read."
    )
    assert rewritten.origin == Message.Origin.HUMAN and rewritten.edit_distance is None


def test_every_edit_of_an_imported_model_reply_is_measured_against_the_models_text(trainer):
    """Edits of an edit are branches of the same turn: each is measured against the reply the
    model wrote, never against the trainer's previous edit."""
    imported = _imported_model_reply(trainer)
    first = services.message_branch(
        original=imported, author=trainer, content="Sure, the lake it is, with a picnic at one."
    )
    assert first.edit_distance == 3  # noon -> one

    second = services.message_branch(
        original=first, author=trainer, content="Sure, the lake it is, with a picnic at noon today."
    )
    third = services.message_branch(
        original=second, author=trainer, content="Sure, the lake it is, with a picnic at noon!"
    )

    assert second.origin == Message.Origin.MODEL_EDITED
    assert second.edit_distance == len(" today")  # from the model's "noon.", not "one."
    assert third.origin == Message.Origin.MODEL_EDITED and third.edit_distance == 1
    assert [m.model_original_id for m in (first, second, third)] == [imported.pk] * 3
    # Far from the model's text, though a small edit of the previous edit: the trainer's own.
    far = services.message_branch(
        original=second, author=trainer, content="Rather a quiet day reading at home, noon today."
    )
    assert far.origin == Message.Origin.HUMAN and far.model_original_id is None


@pytest.mark.parametrize("title", MULTI_LINE_TITLES)
def test_the_service_and_the_admins_form_refuse_a_title_of_more_than_one_line(trainer, title):
    with pytest.raises(ValidationError) as refused:
        services.conversation_create(owner=trainer, title=title)
    assert refused.value.message_dict == {"title": [LINE_MESSAGE]}
    # The admin's change form validates the model's fields.
    conversation = services.conversation_create(owner=trainer, title="One line")
    conversation.title = title
    with pytest.raises(ValidationError) as refused:
        conversation.full_clean(exclude=["active_leaf"])
    assert refused.value.message_dict == {"title": [LINE_MESSAGE]}
    assert list(Conversation.objects.values_list("title", flat=True)) == ["One line"]


def test_a_turn_is_never_appended_after_another_conversations_message(
    conversation, trainer, other_trainer
):
    """Should the branch shown point into another conversation (written there by hand), the
    turn is refused, not written after another writer's message."""
    other = services.conversation_create(owner=other_trainer, title="Elsewhere")
    (elsewhere,) = write_turns(other, other_trainer, "not yours")
    Conversation.objects.filter(pk=conversation.pk).update(active_leaf=elsewhere)
    conversation.refresh_from_db()

    with pytest.raises(ValidationError, match="another conversation"):
        services.message_append(conversation=conversation, author=trainer, content="hello")
    assert not conversation.messages.exists()
