import random
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from labeling.models import Message
from ranking.models import Candidate, RankingTask
from ranking.rank import services as ranking_services
from sampler.generation import services
from sampler.moderation import filters as moderation
from sampler.moderation.models import ModerationResult, text_sha256
from sampler.moderation.selectors import moderation_shown_of_texts
from sampler.moderation.services import samples_moderate, texts_moderate
from tests.ranking.conftest import (
    edited_from_a_suggestion,
    finished_conversation,
    imported_reply,
)
from tests.sampler.conftest import job_unqueued


@pytest.fixture
def builtin_filter(settings):
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"profanity": ["darn", "good grief"]}
    settings.CONTENT_FILTER_PATTERNS = {"personal_data": [r"\b\d{3}-\d{4}\b"]}
    return settings


# ---- the built-in filter ----------------------------------------------------------------------


def test_builtin_filter_matches_whole_words_case_insensitively():
    content_filter = moderation.BuiltinFilter(
        words={"profanity": ["darn", "good grief"]}, patterns={"personal_data": [r"\d{3}-\d{4}"]}
    )
    results = content_filter.score(
        ["Well DARN it.", "darned socks", "Good   grief!", "call 555-1234", "all fine"]
    )
    assert [r.flagged for r in results] == [True, False, True, True, False]
    assert results[0].categories == ["profanity"]
    assert results[0].details["matches"] == {"profanity": ["DARN"]}
    assert results[3].categories == ["personal_data"]
    assert results[4].categories == [] and results[4].scores == {}


def test_builtin_filter_version_changes_with_its_lists():
    first = moderation.BuiltinFilter(words=["darn"], patterns=[])
    same = moderation.BuiltinFilter(words=["darn"], patterns=[])
    other = moderation.BuiltinFilter(words=["drat"], patterns=[])
    assert first.version == same.version != other.version
    assert first.words == {"blocklist": ["darn"]}


def test_a_bad_pattern_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="not a regex"):
        moderation.BuiltinFilter(words=[], patterns=["(unclosed"])


@pytest.mark.parametrize(
    ("pattern", "where"),
    [
        ("a*", "the empty string"),
        ("x|", "the empty string"),
        ("(secret)?", "the empty string"),
        ("^", "the empty string"),
        (r"\s*$", "the empty string"),
        # Empty only beside some characters: a word boundary, a lookahead.
        (r"\b", "an empty string in 'a'"),
        ("(?=a)", "an empty string in 'a'"),
        (r"\d*(?=\.)", "an empty string in '.'"),
    ],
)
def test_a_pattern_that_matches_an_empty_string_is_a_configuration_error(pattern, where):
    """An empty match flagged a sample with nothing found in it: "a*" flagged every text."""
    with pytest.raises(ImproperlyConfigured) as refused:
        moderation.BuiltinFilter(words=[], patterns={"pii": [r"\d{3}", pattern]})
    message = str(refused.value)
    assert message.startswith(f"CONTENT_FILTER_PATTERNS: {pattern!r} ('pii') matches {where}")
    assert "at least one character" in message


def test_a_pattern_that_always_matches_something_is_taken():
    content_filter = moderation.BuiltinFilter(words=[], patterns=[r"a+", r"\bx\w*", "colou?r"])
    assert [r.flagged for r in content_filter.score(["", "b b", "aa", "xylophone", "color"])] == [
        False,
        False,
        True,
        True,
        True,
    ]


def test_an_empty_match_the_configuration_check_did_not_foresee_flags_nothing():
    """A pattern matching an empty string only after "@" ("(?<=@)\\w*"), which no probe holds,
    passed the check, then flagged "mail me @ home" with nothing found in it."""
    content_filter = moderation.BuiltinFilter(words=[], patterns={"handle": [r"(?<=@)\w*"]})
    plain, handle = content_filter.score(["mail me @ home", "ask @tandem"])
    assert not plain.flagged and plain.categories == [] and plain.details["matches"] == {}
    assert handle.flagged and handle.details["matches"] == {"handle": ["tandem"]}
    # The same configuration flagged otherwise before: its version says which verdicts are new.
    assert content_filter.version.startswith("2-")


@pytest.mark.parametrize(
    ("words", "patterns", "named"),
    [
        ({"profanity": ["darn", ""]}, [], "CONTENT_FILTER_WORDS"),
        ({"profanity": ["darn", "  "]}, [], "CONTENT_FILTER_WORDS"),
        # A word where a list was meant: once read as its letters, "a" and "i" among them.
        ({"profanity": "darn"}, [], "CONTENT_FILTER_WORDS"),
        ("darn", [], "CONTENT_FILTER_WORDS"),
        ({"profanity": [["darn"]]}, [], "CONTENT_FILTER_WORDS"),
        ([], {"personal_data": r"\d{3}-\d{4}"}, "CONTENT_FILTER_PATTERNS"),
        ([], [""], "CONTENT_FILTER_PATTERNS"),
    ],
)
def test_a_blank_term_or_a_term_where_a_list_belongs_is_a_configuration_error(
    words, patterns, named
):
    """A blank word matched the empty string between two non-word characters ("Hello, world"
    flagged), and a string given for a list was read letter by letter: nearly every sample
    was flagged, and with blocking on none became a ranking candidate."""
    with pytest.raises(ImproperlyConfigured, match=named):
        moderation.BuiltinFilter(words=words, patterns=patterns)


def test_unknown_filter_setting_is_a_configuration_error(settings):
    settings.CONTENT_FILTER = "magic"
    with pytest.raises(ImproperlyConfigured, match="CONTENT_FILTER"):
        moderation.content_filter_get()


def test_filter_can_be_a_dotted_class_path(settings, policy, trainer):
    settings.CONTENT_FILTER = "tests.sampler.moderation.test_moderation.FlagEverything"
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    results = ModerationResult.objects.filter(sample__job=job)
    assert results.count() == 3
    assert all(r.flagged and r.filter_name == "flag-everything" for r in results)


class FlagEverything:
    name = "flag-everything"
    version = "1"

    def score(self, texts):
        return [moderation.FilterResult(True, ["everything"], {"everything": 1.0}) for _ in texts]


# ---- applied to every generated sample --------------------------------------------------------


def test_a_generation_job_the_filter_cannot_run_on_keeps_its_samples_for_the_sweep(
    builtin_filter, policy, trainer, caplog
):
    """A content filter that cannot run (here a setting refused) loses no generation job: the
    job succeeds, its samples are kept and marked waiting for the filter, and the reason is
    recorded (``ContentFilterProblem``) and logged once at ERROR, as the save task and the sweep
    do. Once the filter runs again, the sweep judges those samples and the record goes. Before,
    the job failed with the filter's error, its samples gone, and nothing was recorded."""
    import logging

    from labeling.conversations import tasks
    from sampler.generation.models import Sample
    from sampler.moderation.models import ContentFilterProblem

    words = builtin_filter.CONTENT_FILTER_WORDS
    builtin_filter.CONTENT_FILTER_WORDS = {"profanity": ["darn", " "]}

    jobs = [services.generation_job_run_inline(job_id=job_unqueued(trainer).pk) for _ in "ab"]

    assert [job.status for job in jobs] == ["succeeded", "succeeded"]
    samples = [sample for job in jobs for sample in job.samples.all()]
    assert len(samples) == 6 and all(sample.moderation_pending for sample in samples)
    assert not ModerationResult.objects.exists()
    assert "CONTENT_FILTER_WORDS" in ContentFilterProblem.objects.get().reason
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "CONTENT_FILTER_WORDS" in errors[0].getMessage()

    builtin_filter.CONTENT_FILTER_WORDS = words
    tasks.moderate_pending_message_texts()

    assert ModerationResult.objects.filter(sample__in=samples).count() == 6
    assert not Sample.objects.filter(moderation_pending=True).exists()
    assert not ContentFilterProblem.objects.exists()


def test_every_generated_sample_gets_one_result_and_filtering_again_stores_nothing(
    builtin_filter, policy, trainer
):
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    samples = list(job.samples.all())
    results = ModerationResult.objects.filter(sample__job=job)
    assert results.count() == 3
    result = results.first()
    assert result.filter_name == "builtin" and result.filter_version.startswith("2-")

    again = samples_moderate(samples=samples)
    assert set(again) == {s.pk for s in samples}
    assert ModerationResult.objects.filter(sample__job=job).count() == 3


def test_a_sample_that_matches_the_filter_is_flagged(settings, policy, trainer):
    settings.CONTENT_FILTER = "none"
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    assert not ModerationResult.objects.exists()  # filtering off: nothing recorded
    sample = max(job.samples.all(), key=lambda s: len(s.text))
    word = max(re.findall(r"\w+", sample.text), key=len)
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"test_words": [word.upper()]}
    settings.CONTENT_FILTER_PATTERNS = {}

    results = samples_moderate(samples=list(job.samples.all()))

    assert results[sample.pk].flagged
    assert results[sample.pk].categories == ["test_words"]
    assert results[sample.pk].details["matches"]["test_words"][0].lower() == word.lower()


def test_job_page_warns_about_a_flagged_sample(flag_everything, policy, trainer, trainer_client):
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer, n=2).pk)
    response = trainer_client.get(f"/generation/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.count('class="moderation-warning"') == 2
    assert "The content filter flagged this: everything" in html
    # Each sample offers feedback (thumbs, report, "filter was wrong").
    for sample in job.samples.all():
        assert f"/write/feedback/sample/{sample.pk}/" in html


def test_a_samples_verdict_shown_is_the_configured_filters_once_the_filter_came_back(
    flag_everything, policy, trainer, trainer_client
):
    """Judged by filter A (flagging everything), then B (the built-in one, passing it), then A
    again: A's verdict is found, not stored again, so B's is the newest; the job page, the
    sample's feedback page and the verdict the ranking screen and the export read all give the
    verdict of the filter configured now, A's."""
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer, n=1).pk)
    sample = job.samples.get()
    everything = flag_everything.CONTENT_FILTER
    flag_everything.CONTENT_FILTER = "builtin"
    flag_everything.CONTENT_FILTER_WORDS = {"secrets": ["password"]}
    flag_everything.CONTENT_FILTER_PATTERNS = {}
    assert not samples_moderate(samples=[sample])[sample.pk].flagged
    flag_everything.CONTENT_FILTER = everything
    assert samples_moderate(samples=[sample])[sample.pk].flagged
    assert sample.moderation_results.count() == 2

    job_page = trainer_client.get(f"/generation/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert 'class="moderation-warning"' in job_page.content.decode()
    feedback_page = trainer_client.get(f"/write/feedback/sample/{sample.pk}/")
    assert "The content filter flagged this: everything" in feedback_page.content.decode()
    (shown,) = moderation_shown_of_texts(texts=[(sample.text, sample.pk)])
    assert shown.flagged and shown.filter_name == moderation.content_filter_get().name


def test_editor_suggestion_cards_warn_about_flagged_samples(flag_everything, policy, trainer):
    from django.test import Client

    from labeling.conversations.services import suggestion_request
    from labeling.models import Conversation

    conversation = Conversation.objects.create(owner=trainer)
    asked = suggestion_request(conversation=conversation, author=trainer, n=2)
    job = services.generation_job_run_inline(job_id=asked.pk)
    client = Client()
    client.force_login(trainer)
    response = client.get(f"/write/{conversation.pk}/suggestions/{job.pk}/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert html.count('class="suggestion sample flagged"') == 2
    assert html.count('class="moderation-warning"') == 2


# ---- blocking flagged samples from ranking tasks ----------------------------------------------


def _ranking_task(other_trainer, settings):
    settings.RANKING_MAX_NEW_TOKENS = 12
    finished_conversation(other_trainer)
    return ranking_services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )


class FlagTheSecond:
    """Flags the second text of each batch it scores (a sample's index in its job)."""

    name = "flag-the-second"
    version = "1"

    def score(self, texts):
        return [
            moderation.FilterResult(index == 1, ["second"] if index == 1 else [], {})
            for index, _ in enumerate(texts)
        ]


def test_with_blocking_on_a_flagged_sample_never_becomes_a_ranking_candidate(
    settings, policy, other_trainer
):
    settings.CONTENT_FILTER = "tests.sampler.moderation.test_moderation.FlagTheSecond"
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    task = _ranking_task(other_trainer, settings)

    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.status == RankingTask.Status.READY
    samples = list(task.generation_job.samples.order_by("index"))
    flagged = samples[1]
    assert ModerationResult.objects.get(sample=flagged).flagged
    candidate_samples = set(
        Candidate.objects.filter(task=task).values_list("message__sample_id", flat=True)
    )
    assert flagged.pk not in candidate_samples
    assert {s.pk for s in samples if s.pk != flagged.pk} <= candidate_samples
    assert Candidate.objects.filter(task=task).count() == 3  # the source + 2 alternatives


def test_with_blocking_on_a_flagged_reply_is_not_the_source_of_a_task(
    settings, policy, other_trainer
):
    settings.CONTENT_FILTER = "tests.sampler.moderation.test_moderation.FlagTheSecond"
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    suggested = services.generation_job_run_inline(job_id=job_unqueued(other_trainer, n=2).pk)
    flagged = suggested.samples.get(index=1)  # the trainer used a flagged suggestion as is
    assert ModerationResult.objects.get(sample=flagged).flagged
    task = _ranking_task(other_trainer, settings)
    task.source_message.__class__.objects.filter(pk=task.source_message_id).update(
        sample=flagged, content=flagged.text
    )

    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.status == RankingTask.Status.FAILED
    assert "flagged the reply this task was made from" in task.error
    assert not Candidate.objects.filter(task=task).exists()


@pytest.mark.parametrize("blocking", [False, True])
def test_a_ranking_task_prepared_while_the_filter_cannot_run_keeps_its_samples(
    settings, policy, other_trainer, blocking
):
    """A preparation the content filter cannot run on (here a setting refused) keeps its
    samples, waiting for the sweep, and records the reason. The task is made of them as they
    are, unless flagged replies are kept out of ranking: then it fails saying why, its source
    given back (no fault of it). Before, the preparation failed with the filter's error, its
    samples gone, and nothing was recorded."""
    from sampler.moderation.models import ContentFilterProblem

    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}
    settings.CONTENT_FILTER_BLOCK_RANKING = blocking
    task = _ranking_task(other_trainer, settings)

    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.generation_job.status == "succeeded"
    samples = list(task.generation_job.samples.all())
    assert len(samples) == 3 and all(sample.moderation_pending for sample in samples)
    assert "CONTENT_FILTER_WORDS" in ContentFilterProblem.objects.get().reason
    if blocking:
        assert task.status == RankingTask.Status.FAILED and not task.holds_source
        assert task.error == ranking_services.UNJUDGED_KEPT_OUT
        assert not Candidate.objects.filter(task=task).exists()
    else:
        assert task.status == RankingTask.Status.READY
        assert Candidate.objects.filter(task=task).count() == 4


# A reply that gives a password away (flagged by ``secrets_filter``) and one that does not.
LEAKED = "here is the password."
CLEAN = "here is the answer."


def _prepared_with_blocking(settings, source: Message) -> RankingTask:
    """The task made of ``source`` (the one reply a task can be made of), with flagged replies
    kept out of ranking."""
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    settings.RANKING_MAX_NEW_TOKENS = 8
    task = ranking_services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=2, queue=False
    )
    assert task.source_message_id == source.pk
    return ranking_services.ranking_task_prepare(task_id=task.pk)


def _assert_kept_out_for_its_own_text(task: RankingTask, text: str) -> None:
    """``task`` failed for its source, flagged on ``text`` (its own, as no sample's)."""
    assert task.status == RankingTask.Status.FAILED
    assert "flagged the reply this task was made from" in task.error
    assert not Candidate.objects.filter(task=task).exists()
    verdict = ModerationResult.objects.get(text_sha256=text_sha256(text))
    assert verdict.sample is None and verdict.flagged and verdict.categories == ["secrets"]


def _assert_ranked_with_the_verdict_on_its_own_text(task: RankingTask, text: str) -> None:
    """``task`` is ready, its source ``text`` passed on its own, by the filter of the day (as
    its alternatives were)."""
    assert task.status == RankingTask.Status.READY
    source = Candidate.objects.get(task=task, is_source=True)
    assert source.message.content == text
    verdict = ModerationResult.objects.get(text_sha256=text_sha256(text))
    assert verdict.sample is None and not verdict.flagged
    alternative = Candidate.objects.filter(task=task, is_source=False).first()
    sampled = ModerationResult.objects.get(sample_id=alternative.message.sample_id)
    assert (verdict.filter_name, verdict.filter_version) == (
        sampled.filter_name,
        sampled.filter_version,
    )


def test_with_blocking_on_an_edited_reply_whose_own_text_is_flagged_is_not_a_source(
    secrets_filter, policy, other_trainer
):
    """The suggestion passed, but its writer added the flagged word: the reply is judged on
    its own text, not on the suggestion's."""
    source = edited_from_a_suggestion(other_trainer, policy, suggested=CLEAN, written=LEAKED)

    task = _prepared_with_blocking(secrets_filter, source)

    _assert_kept_out_for_its_own_text(task, LEAKED)


def test_with_blocking_on_an_edited_reply_whose_flagged_words_were_taken_out_is_ranked(
    secrets_filter, policy, other_trainer
):
    source = edited_from_a_suggestion(other_trainer, policy, suggested=LEAKED, written=CLEAN)

    task = _prepared_with_blocking(secrets_filter, source)

    _assert_ranked_with_the_verdict_on_its_own_text(task, CLEAN)


@pytest.mark.parametrize("origin", ["model", "model_edited"])
def test_with_blocking_on_an_imported_reply_whose_text_is_flagged_is_not_a_source(
    secrets_filter, policy, other_trainer, origin
):
    """An imported reply has no sample the filter saw as it was sampled: it is judged on its
    own text when a task is made of it, as an edited reply is."""
    source = imported_reply(other_trainer, written=LEAKED, origin=origin)

    task = _prepared_with_blocking(secrets_filter, source)

    _assert_kept_out_for_its_own_text(task, LEAKED)


def test_with_blocking_on_an_imported_reply_that_passes_is_ranked_with_its_verdict(
    secrets_filter, policy, other_trainer
):
    source = imported_reply(other_trainer, written=CLEAN)

    task = _prepared_with_blocking(secrets_filter, source)

    _assert_ranked_with_the_verdict_on_its_own_text(task, CLEAN)


def test_a_text_filtered_again_stores_nothing(secrets_filter, db):
    first = texts_moderate(texts=[LEAKED, CLEAN])
    again = texts_moderate(texts=[CLEAN, LEAKED])

    assert ModerationResult.objects.count() == 2
    assert {text: result.pk for text, result in again.items()} == {
        text: result.pk for text, result in first.items()
    }
    assert first[LEAKED].flagged and not first[CLEAN].flagged


def test_with_blocking_off_flagged_samples_are_ranked(flag_everything, policy, other_trainer):
    flag_everything.CONTENT_FILTER_BLOCK_RANKING = False
    task = _ranking_task(other_trainer, flag_everything)

    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.status == RankingTask.Status.READY
    assert Candidate.objects.filter(task=task).count() == 4
    # The 3 samples, and the source (written with no sample here) on its own text.
    assert ModerationResult.objects.filter(flagged=True, sample__isnull=False).count() == 3
    assert ModerationResult.objects.get(sample__isnull=True).flagged


class FlagAllButTheOriginal:
    """Flags every text (an empty one too) but the reply ``_ranking_task`` makes its task of."""

    name = "flag-all-but-the-original"
    version = "1"

    def score(self, texts):
        original = "hello! how can i help?"
        return [
            moderation.FilterResult(text != original, [] if text == original else ["other"], {})
            for text in texts
        ]


def test_with_blocking_on_a_task_whose_samples_are_all_flagged_fails_with_a_reason(
    settings, policy, other_trainer
):
    settings.CONTENT_FILTER = "tests.sampler.moderation.test_moderation.FlagAllButTheOriginal"
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    task = _ranking_task(other_trainer, settings)

    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.status == RankingTask.Status.FAILED
    assert "content filter flagged all 3" in task.error
    assert not Candidate.objects.filter(task=task).exists()


# ---- the classifier backend -------------------------------------------------------------------


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, micro_model_dir):
    """A tiny random text classifier (labels "safe" / "toxic") built from a config, offline."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(micro_model_dir)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=16,
        n_layer=1,
        n_head=2,
        num_labels=2,
        id2label={0: "safe", 1: "toxic"},
        label2id={"safe": 0, "toxic": 1},
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classifier")
    GPT2ForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_classifier_flags_labels_at_or_above_the_threshold_and_never_safe_ones(classifier_dir):
    texts = ["hello there", "", "how are you today?"]
    always = moderation.ClassifierFilter(
        path=str(classifier_dir), threshold=0.0, safe_labels=["safe"]
    ).score(texts)
    assert [r.flagged for r in always] == [True, False, True]  # an empty text passes
    assert always[0].categories == ["toxic"]
    assert set(always[0].scores) == {"safe", "toxic"}
    assert sum(always[0].scores.values()) == pytest.approx(1.0, abs=1e-3)  # softmax

    never = moderation.ClassifierFilter(path=str(classifier_dir), threshold=1.01).score(texts)
    assert not any(r.flagged for r in never)

    only_safe = moderation.ClassifierFilter(
        path=str(classifier_dir), threshold=0.0, flag_labels=["safe"]
    ).score(texts)
    assert only_safe[0].categories == ["safe"]


def test_classifier_is_loaded_once_per_process(classifier_dir):
    assert moderation.classifier_load(str(classifier_dir)) is moderation.classifier_load(
        str(classifier_dir)
    )


def test_classifier_backend_filters_generated_samples(settings, classifier_dir, policy, trainer):
    settings.CONTENT_FILTER = "classifier"
    settings.CONTENT_FILTER_MODEL = str(classifier_dir)
    settings.CONTENT_FILTER_THRESHOLD = 0.0
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer).pk)
    results = ModerationResult.objects.filter(sample__job=job)
    assert results.count() == 3
    assert {r.filter_name for r in results} == {f"classifier:{classifier_dir.name}"}
    assert all(set(r.scores) == {"safe", "toxic"} for r in results if r.sample.text.strip())


def test_classifier_without_a_model_is_a_configuration_error(settings):
    settings.CONTENT_FILTER = "classifier"
    settings.CONTENT_FILTER_MODEL = ""
    with pytest.raises(ImproperlyConfigured, match="CONTENT_FILTER_MODEL"):
        moderation.content_filter_get()


@pytest.mark.parametrize(
    "configured, error, logged",
    [
        # A setting the filter refuses.
        (
            {"CONTENT_FILTER": "classifier", "CONTENT_FILTER_MODEL": ""},
            ImproperlyConfigured,
            "CONTENT_FILTER_MODEL",
        ),
        # A dotted path naming a class that cannot be made from the settings (it needs
        # arguments). Before, only a refused setting or a path that did not import was taken as
        # a filter that cannot be built: the pages answered 500.
        ({"CONTENT_FILTER": "sampler.moderation.filters.ClassifierFilter"}, TypeError, "TypeError"),
    ],
)
def test_a_filter_the_settings_cannot_build_leaves_the_pages_showing_the_newest_verdict(
    flag_everything, policy, trainer, trainer_client, caplog, monkeypatch, configured, error, logged
):
    """Which verdict a page shows is read from the configured filter; one that cannot be built
    is logged, once a process (every page asks), and the pages show the newest verdict rather
    than fail; filtering itself still refuses the setting."""
    monkeypatch.setattr(moderation, "_unbuildable_said", set())
    job = services.generation_job_run_inline(job_id=job_unqueued(trainer, n=1).pk)
    sample = job.samples.get()
    for name, value in configured.items():
        setattr(flag_everything, name, value)

    job_page = trainer_client.get(f"/generation/jobs/{job.pk}/", HTTP_HX_REQUEST="true")
    assert job_page.status_code == 200
    assert 'class="moderation-warning"' in job_page.content.decode()
    feedback_page = trainer_client.get(f"/write/feedback/sample/{sample.pk}/")
    assert feedback_page.status_code == 200
    assert "The content filter flagged this: everything" in feedback_page.content.decode()
    assert "The content filter cannot be built" in caplog.text and logged in caplog.text
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1, "both pages asked; the error is reported once"
    with pytest.raises(error):
        samples_moderate(samples=[sample])


def test_a_preparation_kept_out_while_the_filter_cannot_run_spends_none_of_its_sources_tries(
    settings, policy, other_trainer
):
    """A task failed only because the content filter cannot run (its replies not judged, kept
    out of ranking) is no fault of its source: however long the filter is down, the source is
    not given up after its tries, and once the filter runs it becomes a task. Before, each such
    failure spent one of the source's tries, and the last dropped it for good."""
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    task = _ranking_task(other_trainer, settings)
    source_id = task.source_message_id
    for _ in range(ranking_services.SOURCE_PREPARATION_TRIES + 1):
        task = ranking_services.ranking_task_prepare(task_id=task.pk)
        assert task.status == RankingTask.Status.FAILED
        assert task.error == ranking_services.UNJUDGED_KEPT_OUT
        task = ranking_services.ranking_task_create(rng=random.Random(0), queue=False)
        assert task is not None and task.source_message_id == source_id

    settings.CONTENT_FILTER_WORDS = {"secrets": ["password"]}  # the filter runs again
    task = ranking_services.ranking_task_prepare(task_id=task.pk)

    assert task.status == RankingTask.Status.READY and task.holds_source


def test_while_the_filter_cannot_run_and_blocks_ranking_the_pool_fill_holds_off_saying_why(
    settings, policy, other_trainer, client, admin_user
):
    """With CONTENT_FILTER_BLOCK_RANKING on, every task prepared while the content filter
    cannot run fails for it (UNJUDGED_KEPT_OUT): the pool fill makes none meanwhile, and the
    project's page says why, until a fill after the filter runs again (its record deleted).
    Before, each fill picked sources and sampled alternatives only for the tasks to fail."""
    from html import escape

    from ranking.models import Project
    from sampler.generation.models import GenerationJob
    from sampler.moderation.services import ContentFilterUnavailable, content_filter_ready

    settings.RANKING_MAX_NEW_TOKENS = 12
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    project = finished_conversation(other_trainer).project
    with pytest.raises(ContentFilterUnavailable) as met:  # a worker meets it (the sweep)
        content_filter_ready()

    assert ranking_services.ranking_pool_fill(rng=random.Random(0)) == 0
    assert ranking_services.ranking_pool_fill(rng=random.Random(0)) == 0

    assert not RankingTask.objects.exists() and not GenerationJob.objects.exists()
    project.refresh_from_db()
    assert project.pool_error == ranking_services.FILTER_DOWN_HOLDS_FILL + str(met.value)
    client.force_login(admin_user)
    page = client.get(reverse("ranking:project-detail", args=[project.slug])).content.decode()
    assert escape(project.pool_error) in page

    settings.CONTENT_FILTER_WORDS = {"secrets": ["password"]}  # the filter runs again
    content_filter_ready()  # the sweep finds it runs, and deletes the record
    assert ranking_services.ranking_pool_fill(rng=random.Random(0)) >= 1

    assert RankingTask.objects.exists()
    assert not Project.objects.filter(pk=project.pk).exclude(pool_error="").exists()


def test_the_first_fill_after_the_filter_stops_running_already_holds_off(
    settings, policy, other_trainer
):
    """The fill asks the filter itself whether it runs, before it prepares anything: the
    first fill after the filter stopped running holds off, with no worker having recorded the
    problem yet. Before, it read only a record a job had left, so it prepared tasks that all
    failed for the filter until a job (the sweep, a preparation) met it."""
    from ranking.models import Project
    from sampler.generation.models import GenerationJob
    from sampler.moderation.models import ContentFilterProblem

    settings.RANKING_MAX_NEW_TOKENS = 12
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    project = finished_conversation(other_trainer).project
    assert not ContentFilterProblem.objects.exists()  # no worker has met it yet

    assert ranking_services.ranking_pool_fill(rng=random.Random(0)) == 0

    assert not RankingTask.objects.exists() and not GenerationJob.objects.exists()
    problem = ContentFilterProblem.objects.get()
    project.refresh_from_db()
    assert project.pool_error == ranking_services.FILTER_DOWN_HOLDS_FILL + problem.reason
    assert not Project.objects.exclude(pk=project.pk).exclude(pool_error="").exists()


def test_a_fill_asks_the_filter_once_and_writes_nothing_of_it_while_it_runs(
    settings, policy, other_trainer
):
    """The readiness check costs one read of the filter's record per fill, however many
    projects it fills, and no write while the filter runs."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ranking.projects.services import project_create
    from sampler.moderation.models import ContentFilterProblem

    settings.RANKING_MAX_NEW_TOKENS = 12
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password"]}
    settings.CONTENT_FILTER_BLOCK_RANKING = True
    finished_conversation(other_trainer)
    project_create(name="Second", slug="second", status="active")
    table = ContentFilterProblem._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        assert ranking_services.ranking_pool_fill(rng=random.Random(0)) >= 1

    touching = [query["sql"] for query in queries if table in query["sql"]]
    assert len(touching) == 1 and touching[0].lstrip().upper().startswith("SELECT")
    assert not ContentFilterProblem.objects.exists()


def test_while_the_fill_holds_off_for_the_filter_it_still_offers_tasks_prepared_before(
    settings, policy, other_trainer
):
    """A project that selects by uncertainty keeps tasks prepared (and judged) before the
    filter stopped running held back: the fill that holds off preparing new ones still
    releases those, as its pool wants them. Before, the hold skipped the selection too, and
    trainers waited on a pool that had ready tasks."""
    from ranking.projects.services import project_create
    from sampler.generation.models import GenerationJob
    from tests.ranking.conftest import model_version_create, task_in_project

    uncertain = project_create(
        name="Uncertain",
        slug="uncertain",
        status="active",
        pool_size=2,
        selection="uncertainty",
        candidate_factor=3,
    )
    version = model_version_create("policy-held")
    held = [task_in_project(other_trainer, uncertain, version, f"held {n}") for n in range(3)]
    RankingTask.objects.filter(pk__in=[task.pk for task in held]).update(held_back=True)
    jobs_before = GenerationJob.objects.count()
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    settings.CONTENT_FILTER_BLOCK_RANKING = True

    assert ranking_services.ranking_pool_fill(rng=random.Random(0)) == 0

    offered = RankingTask.objects.filter(project=uncertain, held_back=False)
    assert offered.count() == 2
    assert RankingTask.objects.count() == 3 and GenerationJob.objects.count() == jobs_before
    uncertain.refresh_from_db()
    assert uncertain.pool_error.startswith(ranking_services.FILTER_DOWN_HOLDS_FILL)


# ---- samples waiting for the filter, where verdicts are shown -----------------------------------

SAMPLE_NOT_JUDGED = "Not judged by the content filter yet."
REPLIES_NOT_JUDGED = "The content filter has not judged every reply here yet."


@pytest.mark.parametrize("configured", [True, False])
def test_samples_waiting_for_the_filter_say_they_are_not_judged_yet(
    settings, policy, trainer, trainer_client, configured
):
    """The suggestion cards, the playground's job page and a sample's feedback page say a
    sample stored while the content filter could not run is not judged yet, where its verdict
    is shown once it has one; not once no filter is configured (nothing would judge it).
    Before, they showed nothing, as for a sample judged clean."""
    from labeling.conversations.services import suggestion_request
    from labeling.models import Conversation

    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    conversation = Conversation.objects.create(owner=trainer)
    asked = suggestion_request(conversation=conversation, author=trainer, n=2)
    suggested = services.generation_job_run_inline(job_id=asked.pk)
    played = services.generation_job_run_inline(job_id=job_unqueued(trainer, n=2).pk)
    sample = played.samples.first()
    assert sample.moderation_pending
    if not configured:
        settings.CONTENT_FILTER = "none"

    cards = trainer_client.get(
        f"/write/{conversation.pk}/suggestions/{suggested.pk}/", HTTP_HX_REQUEST="true"
    ).content.decode()
    job_page = trainer_client.get(f"/generation/jobs/{played.pk}/").content.decode()
    feedback_page = trainer_client.get(f"/write/feedback/sample/{sample.pk}/").content.decode()

    assert cards.count(SAMPLE_NOT_JUDGED) == (2 if configured else 0)
    assert job_page.count(SAMPLE_NOT_JUDGED) == (2 if configured else 0)
    assert (SAMPLE_NOT_JUDGED in feedback_page) == configured
    assert ("The content filter has not judged this text yet." in feedback_page) == configured


def test_the_ranking_screen_says_once_that_replies_wait_for_the_filter(
    settings, policy, other_trainer, trainer_client
):
    """A task made of samples stored while the content filter could not run says so once, for
    the screen, and not on the replies waiting: the alternatives of a task wait together while
    the reply it was made from may be judged, so a word on each would single that one out.
    Before, the screen said nothing, as for replies judged clean."""
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    task = ranking_services.ranking_task_prepare(task_id=_ranking_task(other_trainer, settings).pk)
    assert task.status == RankingTask.Status.READY

    html = trainer_client.post(reverse("ranking:claim"), follow=True).content.decode()

    assert html.count(REPLIES_NOT_JUDGED) == 1 and SAMPLE_NOT_JUDGED not in html
    assert 'class="moderation-warning"' not in html


def test_the_ranking_apis_assignment_says_whether_replies_wait_for_the_filter(
    settings, policy, other_trainer, trainer_client
):
    """The API's assignment says what the ranking screen says once: that the content filter
    has not judged every reply yet (``replies_waiting_for_filter``), false once no filter is
    configured to judge them. Before, the API said nothing, as for replies judged clean."""
    settings.CONTENT_FILTER = "builtin"
    settings.CONTENT_FILTER_WORDS = {"secrets": ["password", " "]}  # refused: cannot run
    task = ranking_services.ranking_task_prepare(task_id=_ranking_task(other_trainer, settings).pk)
    assert task.status == RankingTask.Status.READY

    waiting = trainer_client.post("/api/ranking/claim/")
    settings.CONTENT_FILTER = "none"
    unfiltered = trainer_client.post("/api/ranking/claim/")  # the same assignment, again

    assert waiting.status_code == 200 and waiting.json()["replies_waiting_for_filter"] is True
    assert unfiltered.json()["assignment_id"] == waiting.json()["assignment_id"]
    assert unfiltered.json()["replies_waiting_for_filter"] is False
