import gzip
import hashlib
import io
import json
import random
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from labeling.conversations import services as labeling_services
from labeling.models import Conversation, Message
from ranking.exports import demonstrations
from ranking.exports import services as export_services
from ranking.exports.filters import ExportFilters, pseudonym, split_of
from ranking.exports.models import skipped_summary
from ranking.exports.pairs import pair_records
from ranking.exports.pipeline import records, source_count, write_jsonl
from ranking.exports.rankings import ranking_records
from ranking.exports.reading import task_bundles
from ranking.exports.selectors import export_preview_get
from ranking.models import DatasetExport, Ranking
from ranking.rank import services
from ranking.rank.services import RankingInput
from sampler.jobs.services import job_cancel, job_execute, job_retry, job_run_inline
from sampler.moderation.services import samples_moderate
from sampler.runs.sources import flag_kto_records, reward_records
from tests.ranking.conftest import (
    candidate_ids,
    edited_from_a_suggestion,
    finished_conversation,
    imported_reply,
    model_version_create,
    quick_trainer,
    rank,
    task_from_source,
)


def _exported_original() -> dict:
    """The source candidate of the rankings record of a task made of the one finished
    conversation's reply, prepared and ranked once."""
    task = services.ranking_task_create(
        rng=random.Random(0), alternatives=3, overlap=1, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)
    rank(task, quick_trainer("ranker"), [[0], [1], [2], [3]])
    (record,) = ranking_records(ExportFilters())
    (original,) = [c for c in record["candidates"] if c["is_source"]]
    return original


def test_an_edited_candidate_carries_the_verdict_on_its_own_text_not_its_suggestions(
    secrets_filter, policy, other_trainer
):
    """A rankings record's ``moderation`` is on the text it exports: a reply edited from a
    flagged suggestion, the password taken out, is not exported as flagged."""
    secrets_filter.RANKING_MAX_NEW_TOKENS = 8
    source = edited_from_a_suggestion(
        other_trainer, policy, suggested="here is the password.", written="here is the answer."
    )
    assert samples_moderate(samples=[source.sample])[source.sample_id].flagged

    original = _exported_original()

    assert original["text"] == "here is the answer."
    assert original["moderation"]["flagged"] is False
    assert original["moderation"]["categories"] == []


def test_an_imported_candidate_carries_the_verdict_on_its_own_text(
    secrets_filter, policy, other_trainer
):
    """A reply brought in by an import (no sample here) is exported with the filter's verdict
    on its text, as an edited reply is."""
    secrets_filter.RANKING_MAX_NEW_TOKENS = 8
    secrets_filter.CONTENT_FILTER_BLOCK_RANKING = False
    imported_reply(other_trainer, written="here is the password.")

    original = _exported_original()

    assert original["text"] == "here is the password."
    assert original["moderation"]["flagged"] is True
    assert original["moderation"]["categories"] == ["secrets"]
    assert original["moderation"]["filter"] == "builtin"


def test_per_ranker_pairs_follow_the_ranking(ranked):
    pairs = list(pair_records(ExportFilters()))
    # 3 tasks x 2 rankers x C(4,2) = 36 pairs, no ties.
    assert len(pairs) == 36
    pair = pairs[0]
    assert pair["schema_version"] == 2
    assert pair["prompt"][-1]["role"] == "user"
    assert pair["chosen"][0]["role"] == "assistant" and pair["rejected"][0]["role"] == "assistant"
    assert pair["chosen"] != pair["rejected"]
    assert all(p["rank_distance"] >= 1 for p in pairs)
    # TRL's RewardTrainer reads a `margin` column as a loss margin: the export has none.
    assert not any("margin" in p for p in pairs)
    assert all(str(p["ranker"]).startswith("r-") for p in pairs)  # pseudonymised


def test_ties_give_no_pair(ranked, trainer, other_trainer):
    finished_conversation(other_trainer, turns=("q?", "a."))
    task = services.ranking_task_create(
        rng=random.Random(9), alternatives=3, overlap=1, queue=False
    )
    services.ranking_task_prepare(task_id=task.pk)
    assignment = services.task_claim_next(trainer=trainer)
    ids = sorted(task.candidates.values_list("id", flat=True))
    services.ranking_submit(
        assignment=assignment,
        trainer=trainer,
        ranking=RankingInput([[ids[0], ids[1]], [ids[2], ids[3]]]),
    )
    pairs = [p for p in pair_records(ExportFilters()) if p["task_id"] == task.pk]
    assert len(pairs) == 4  # 2 x 2 across the groups, none inside a tie


def test_aggregated_pairs_keep_the_majority_and_drop_pairs_without_one(ranked):
    aggregated = list(pair_records(ExportFilters(pair_mode="aggregated")))
    # The two rankers disagree on one pair per task: no majority there.
    assert len(aggregated) == 3 * 5
    assert all(p["votes"] == 2 and p["agreement"] == 1.0 for p in aggregated)
    assert all(p["rank_distance"] >= 1 and "margin" not in p for p in aggregated)


def test_aggregated_pairs_below_min_agreement_are_dropped_and_the_rest_kept(db):
    rankers = [quick_trainer(f"ranker{i}") for i in range(3)]
    source = finished_conversation(quick_trainer("writer")).active_leaf
    task = task_from_source(source, model_version=model_version_create("v1"))
    a, b, c, d = candidate_ids(task)
    rank(task, rankers[0], [[0], [1], [2], [3]])
    rank(task, rankers[1], [[0], [1], [2], [3]])
    # The third ranker swaps a/b and c/d: those two pairs win 2 votes of 3.
    rank(task, rankers[2], [[1], [0], [3], [2]])

    def pairs(min_agreement):
        filters = ExportFilters(pair_mode="aggregated", min_agreement=min_agreement)
        return {
            (p["chosen_candidate_id"], p["rejected_candidate_id"]): p for p in pair_records(filters)
        }

    everything = pairs(None)
    contested = {(a, b), (c, d)}
    assert set(everything) == {(a, b), (a, c), (a, d), (b, c), (b, d), (c, d)}
    assert all(p["votes"] == 3 for p in everything.values())
    assert {key for key, p in everything.items() if p["agreement"] < 1} == contested
    assert all(everything[key]["agreement"] == pytest.approx(2 / 3) for key in contested)
    assert set(pairs(2 / 3)) == set(everything)  # the threshold itself is kept
    assert set(pairs(0.7)) == set(everything) - contested
    assert set(pairs(1.0)) == set(everything) - contested


def _tasks_with_known_agreement():
    """Four one-conversation tasks: rankers agree fully (1.0), on 5 of 6 pairs, on none (0.0),
    and a task ranked once (agreement undefined)."""
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    writer = quick_trainer("writer")
    version = model_version_create("v1")
    tasks = {}
    for name, second in (
        ("full", [[0], [1], [2], [3]]),
        ("five_of_six", [[0], [2], [1], [3]]),
        ("none", [[3], [2], [1], [0]]),
        ("single", None),
    ):
        source = finished_conversation(writer, turns=(f"{name}?", f"{name}.")).active_leaf
        task = task_from_source(source, model_version=version)
        rank(task, rankers[0], [[0], [1], [2], [3]])
        if second:
            rank(task, rankers[1], second)
        tasks[name] = task.pk
    return tasks


def test_per_ranker_pairs_and_rankings_below_min_task_agreement_are_dropped(db):
    tasks = _tasks_with_known_agreement()

    def exported(format, min_agreement, pair_mode="per_ranker"):
        filters = ExportFilters(min_agreement=min_agreement, pair_mode=pair_mode)
        return [row["task_id"] for row in records(format, filters)]

    everything = set(tasks.values())
    assert set(exported("pairs", None)) == set(exported("rankings", None)) == everything
    # Five of six pairs agree: 0.833.
    kept = {tasks["full"], tasks["five_of_six"]}
    assert set(exported("pairs", 0.8)) == set(exported("rankings", 0.8)) == kept
    assert set(exported("pairs", 0.9)) == set(exported("rankings", 0.9)) == {tasks["full"]}
    # A task ranked once has no agreement, so no threshold, not even 0, lets it through.
    assert set(exported("rankings", 0.0)) == everything - {tasks["single"]}
    agreements = {r["task_id"]: r["task_agreement"] for r in records("rankings", ExportFilters())}
    assert agreements[tasks["five_of_six"]] == pytest.approx(5 / 6)
    assert agreements[tasks["none"]] == 0.0 and agreements[tasks["single"]] is None
    # Rankings carry no pair mode: min_agreement is the task's whatever pair_mode says.
    assert set(exported("rankings", 0.8, pair_mode="aggregated")) == kept


def _at(day: str, clock: str = "12:00") -> datetime:
    zone = timezone.get_current_timezone()
    return datetime.combine(date.fromisoformat(day), dt_time.fromisoformat(clock), tzinfo=zone)


def test_date_range_keeps_rankings_submitted_on_its_days_in_the_current_time_zone(db, settings):
    # Away from UTC, so a range read in UTC would take or drop the wrong rankings.
    settings.TIME_ZONE = "America/New_York"
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    writer = quick_trainer("writer")
    version = model_version_create("v1")
    submitted, inside = {}, set()
    # Per task, (submitted at, inside 15-20 January) for the first ranker and the second.
    for index, times in enumerate(
        (
            ((_at("2026-01-14", "23:59:59"), False), (_at("2026-01-15", "00:00"), True)),
            ((_at("2026-01-20", "23:59:59"), True),),
            ((_at("2026-01-21", "00:00"), False), (_at("2026-01-18"), True)),
        )
    ):
        source = finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf
        task = task_from_source(source, model_version=version)
        for ranker, (when, is_inside) in zip(rankers, times, strict=False):
            ranking = rank(task, ranker, [[0], [1], [2], [3]])
            Ranking.objects.filter(pk=ranking.pk).update(submitted_at=when)
            submitted[ranking.pk] = when
            if is_inside:
                inside.add(ranking.pk)

    def ranking_ids(format, **bounds):
        filters = ExportFilters(**{key: date.fromisoformat(day) for key, day in bounds.items()})
        return {row["ranking_id"] for row in records(format, filters)}

    january = {"date_from": "2026-01-15", "date_to": "2026-01-20"}
    assert ranking_ids("rankings", **january) == ranking_ids("pairs", **january) == inside
    assert source_count("rankings", ExportFilters(date_from=date(2026, 1, 15))) == 4
    earliest = min(submitted, key=submitted.get)
    assert ranking_ids("rankings", date_from="2026-01-15") == set(submitted) - {earliest}
    latest = max(submitted, key=submitted.get)
    assert ranking_ids("rankings", date_to="2026-01-20") == set(submitted) - {latest}
    aggregated = ExportFilters(pair_mode="aggregated", date_from=date(2026, 1, 21))
    assert {p["votes"] for p in pair_records(aggregated)} == {1}  # one ranking left to vote


def test_date_range_keeps_demonstrations_finished_on_its_days(db, settings):
    settings.TIME_ZONE = "America/New_York"
    writer = quick_trainer("writer")
    finished = {}
    for index, when in enumerate(
        (_at("2026-01-14", "23:59:59"), _at("2026-01-15", "00:00"), _at("2026-01-21", "00:00"))
    ):
        conversation = finished_conversation(writer, turns=(f"q{index}?", f"a{index}."))
        Conversation.objects.filter(pk=conversation.pk).update(finished_at=when)
        finished[index] = conversation.pk
    january = ExportFilters(date_from=date(2026, 1, 15), date_to=date(2026, 1, 20))
    assert [r["conversation_id"] for r in records("demonstrations", january)] == [finished[1]]
    assert source_count("demonstrations", january) == 1
    until_21st = ExportFilters(date_to=date(2026, 1, 21))
    assert {r["conversation_id"] for r in records("demonstrations", until_21st)} == set(
        finished.values()
    )


def test_model_version_filter_keeps_tasks_sampled_by_those_policies(db):
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    writer = quick_trainer("writer")
    first, second = model_version_create("policy-1"), model_version_create("policy-2")
    by_version = {first.pk: set(), second.pk: set()}
    for index, version in enumerate((first, second, first)):
        source = finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf
        task = task_from_source(source, model_version=version)
        for ranker in rankers:
            rank(task, ranker, [[0], [1], [2], [3]])
        by_version[version.pk].add(task.pk)

    def exported(format, version_ids, pair_mode="per_ranker"):
        filters = ExportFilters(model_version_ids=version_ids, pair_mode=pair_mode)
        return list(records(format, filters))

    only_first = exported("rankings", (first.pk,))
    assert {r["task_id"] for r in only_first} == by_version[first.pk]
    assert {r["model_version"] for r in only_first} == {"policy-1"} and len(only_first) == 4
    for pair_mode in ("per_ranker", "aggregated"):
        pairs = exported("pairs", (second.pk,), pair_mode)
        assert pairs and {p["task_id"] for p in pairs} == by_version[second.pk]
    both = {r["task_id"] for r in exported("rankings", (first.pk, second.pk))}
    assert both == by_version[first.pk] | by_version[second.pk]
    assert source_count("pairs", ExportFilters(model_version_ids=(second.pk,))) == 2


def test_exclude_flagged_and_trainers(ranked):
    _, rankers = ranked
    without_harmful = list(pair_records(ExportFilters(exclude_flags=("harmful",))))
    # The flagged reply is dropped from every pair of its task, for every ranker.
    assert len(without_harmful) == 3 * 2 * 3
    only_second = list(ranking_records(ExportFilters(exclude_trainer_ids=(rankers[0].pk,))))
    assert len(only_second) == 3
    without_flagged = list(ranking_records(ExportFilters(exclude_flags=("harmful",))))
    assert [r["ranking_id"] for r in without_flagged] == [r["ranking_id"] for r in only_second]


def _conversations_with_two_ranked_tasks(count: int) -> None:
    """``count`` finished conversations, each with two ranked tasks (one per assistant turn)
    and a second, human-written last reply, so two demonstrations."""
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    writer = quick_trainer("writer")
    version = model_version_create("v1")
    for index in range(count):
        conversation = finished_conversation(
            writer, turns=(f"q{index}?", f"a{index}.", f"more {index}?", f"again {index}.")
        )
        last = conversation.active_leaf
        Message.objects.create(
            conversation=conversation, parent=last.parent, role="assistant", content="other"
        )
        for source in conversation.messages.filter(role="assistant", origin="model"):
            task = task_from_source(source, model_version=version, alternatives=2)
            rank(task, rankers[0], [[0], [1], [2]])
            rank(task, rankers[1], [[0], [2], [1]])


SPLIT_EXPORTS = {
    "rankings": {},
    "per-ranker pairs": {"pair_mode": "per_ranker"},
    "aggregated pairs": {"pair_mode": "aggregated"},
    "demonstrations": {},
}


@pytest.mark.parametrize("export", SPLIT_EXPORTS)
def test_split_puts_each_conversation_on_one_side_and_depends_only_on_the_seed(db, export):
    _conversations_with_two_ranked_tasks(30)
    format = export.split()[-1]

    def rows(split="all", seed=3):
        filters = ExportFilters(
            split=split, split_seed=seed, test_fraction=0.5, **SPLIT_EXPORTS[export]
        )
        return [json.dumps(row, sort_keys=True) for row in records(format, filters)]

    every, train, test = rows(), rows("train"), rows("test")
    assert sorted(train + test) == sorted(every)
    sides = {}
    for row in map(json.loads, every):
        sides.setdefault(row["conversation_id"], []).append(row["split"])
        assert row["split"] == split_of(row["conversation_id"], seed=3, test_fraction=0.5)
    assert len(sides) == 30 and all(len(split) >= 2 for split in sides.values())
    assert all(len(set(split)) == 1 for split in sides.values())
    train_conversations = {json.loads(row)["conversation_id"] for row in train}
    test_conversations = {json.loads(row)["conversation_id"] for row in test}
    assert train_conversations and test_conversations
    assert not train_conversations & test_conversations
    assert rows("test") == test  # the same seed, the same split
    other_seed = {json.loads(row)["conversation_id"] for row in rows("test", seed=4)}
    assert other_seed != test_conversations


def test_ranking_records_carry_provenance(ranked):
    row = next(iter(ranking_records(ExportFilters())))
    assert len(row["candidates"]) == 4
    sampled = [c for c in row["candidates"] if not c["is_source"]]
    assert all(c["sampling"]["seed"] is not None and c["sampling"]["params"] for c in sampled)
    assert all(c["model_version"] == "micro" for c in sampled)
    assert sorted(row["presentation_order"]) == sorted(c["candidate_id"] for c in row["candidates"])
    assert row["duration_ms"] >= 0 and row["submitted_at"]


def test_ranking_records_carry_the_submitted_ordering_flags_rationale_and_pseudonym(db):
    writer = quick_trainer("writer")
    ranker, unable = quick_trainer("ranker"), quick_trainer("unable")
    task = task_from_source(
        finished_conversation(writer).active_leaf, model_version=model_version_create("v1")
    )
    ids = candidate_ids(task)
    rank(
        task,
        ranker,
        [[1], [0, 3], [2]],
        flags={2: ["untruthful", "harmful"], 3: ["other"]},
        flag_notes={3: "made up a date"},
        rationale="  Reply 1 answers; 0 and 3 are as good.  ",
    )
    rank(task, unable, [], cannot_rank=True, rationale="not my language")
    rows = {row["ranker"]: row for row in ranking_records(ExportFilters())}
    mine = rows[pseudonym(ranker.pk, enabled=True)]
    assert mine["ordering"] == [[ids[1]], [ids[0], ids[3]], [ids[2]]]
    assert mine["cannot_rank"] is False
    assert sorted(mine["flags"], key=lambda flag: flag["candidate_id"]) == [
        {"candidate_id": ids[2], "flags": ["harmful", "untruthful"], "note": ""},
        {"candidate_id": ids[3], "flags": ["other"], "note": "made up a date"},
    ]
    assert mine["rationale"] == "Reply 1 answers; 0 and 3 are as good."
    assert str(mine["ranker"]).startswith("r-")
    assert mine["ranker"] not in (ranker.pk, str(ranker.pk), ranker.username)
    theirs = rows[pseudonym(unable.pk, enabled=True)]
    assert theirs["ordering"] == [] and theirs["cannot_rank"] is True and theirs["flags"] == []
    assert (mine["verdict"], theirs["verdict"]) == ("ranked", "cannot_rank")
    assert mine["order_unchanged"] is False and theirs["order_unchanged"] is None
    assert "first_placement_ms" in mine
    assert len(rows) == 2  # the two rankers' pseudonyms differ
    named = {row["ranker"] for row in ranking_records(ExportFilters(pseudonymize=False))}
    assert named == {ranker.pk, unable.pk}


def test_task_bundles_in_small_chunks_lose_and_repeat_nothing(db):
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    writer = quick_trainer("writer")
    version = model_version_create("v1")
    for index in range(7):
        source = finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf
        task = task_from_source(source, model_version=version)
        rank(task, rankers[0], [[0], [1], [2], [3]])
        # The first chunk of two holds only rankings by the excluded ranker.
        if index >= 2:
            rank(task, rankers[1], [[0], [1], [2], [3]])

    def bundles(filters, chunk_size):
        seen = []
        for bundle in task_bundles(filters, chunk_size=chunk_size):
            assert {c["task_id"] for c in bundle.candidates} == {bundle.task["pk"]}
            assert len(bundle.candidates) == 4
            seen.append((bundle.task["pk"], [r["id"] for r in bundle.rankings]))
        return seen

    everything = bundles(ExportFilters(), chunk_size=500)
    assert len(everything) == 7
    assert sorted(r for _, ids in everything for r in ids) == sorted(
        Ranking.objects.values_list("pk", flat=True)
    )
    for chunk_size in (1, 2, 3):
        assert bundles(ExportFilters(), chunk_size=chunk_size) == everything
    without_first = ExportFilters(exclude_trainer_ids=(rankers[0].pk,))
    assert len(bundles(without_first, chunk_size=500)) == 5
    assert bundles(without_first, chunk_size=2) == bundles(without_first, chunk_size=500)


def test_demonstrations_in_small_chunks_lose_and_repeat_nothing(db, monkeypatch):
    writer = quick_trainer("writer")
    for index in range(5):
        conversation = finished_conversation(writer, turns=(f"q{index}?", f"a{index}."))
        if index % 2:  # a second reply: two paths that must stay in one chunk
            Message.objects.create(
                conversation=conversation,
                parent=conversation.active_leaf.parent,
                role="assistant",
                content=f"other {index}",
            )
    everything = list(records("demonstrations", ExportFilters()))
    assert len(everything) == 5 + 2
    monkeypatch.setattr(demonstrations, "CHUNK_SIZE", 2)
    assert list(records("demonstrations", ExportFilters())) == everything


def test_demonstrations_are_root_to_leaf_paths_without_ranking_alternatives(ranked, trainer):
    conversation = labeling_services.conversation_create(owner=trainer)
    first = labeling_services.message_append(
        conversation=conversation, author=trainer, content="hi"
    )
    reply = labeling_services.message_append(
        conversation=conversation, author=trainer, content="hello"
    )
    labeling_services.message_append(conversation=conversation, author=trainer, content="bye")
    labeling_services.message_branch(original=reply, author=trainer, content="hey there")
    labeling_services.conversation_finish(conversation=conversation, user=trainer)
    del first
    rows = [
        r
        for r in records("demonstrations", ExportFilters())
        if r["conversation_id"] == conversation.pk
    ]
    assert sorted(tuple(m["content"] for m in r["messages"]) for r in rows) == [
        ("hi", "hello"),
        ("hi", "hey there"),
    ]
    # The ranked conversations give their original path only, not the sampled alternatives.
    others = [
        r
        for r in records("demonstrations", ExportFilters())
        if r["conversation_id"] != conversation.pk
    ]
    assert len(others) == 3 and all(len(r["messages"]) == 2 for r in others)


def _export_refused(out, *options: str, format: str = "pairs") -> str:
    """What ``export_comparisons`` says when it refuses to write ``format`` to ``out`` with
    ``options``; nothing is written there."""
    with pytest.raises(CommandError) as refused:
        call_command(
            "export_comparisons", "--format", format, "--out", str(out), *options, verbosity=0
        )
    assert out.is_dir() or not out.exists()
    return str(refused.value)


def test_the_command_refuses_an_unknown_guideline_version_and_an_unwritable_out(ranked, tmp_path):
    out = tmp_path / "pairs.jsonl"
    unknown = _export_refused(out, "--guideline-version", "99")
    assert unknown == "No guideline version with number 99."
    # Past what a database integer holds: unknown too, not a driver's OverflowError.
    huge = _export_refused(out, "--guideline-version", str(2**64))
    assert huge == f"No guideline version with number {2**64}."
    assert not out.exists()
    folder = _export_refused(tmp_path)
    assert folder == f"Cannot write {tmp_path}: Is a directory."


def test_an_export_that_fails_midway_leaves_no_partial_file_under_its_name(ranked, tmp_path):
    def broken_after_two_rows():
        yield from list(records("pairs", ExportFilters()))[:2]
        raise KeyboardInterrupt  # Ctrl+C, or any error while reading

    out = tmp_path / "new" / "pairs.jsonl.gz"
    with pytest.raises(KeyboardInterrupt):
        write_jsonl(broken_after_two_rows(), out)
    assert list(out.parent.iterdir()) == []
    out.write_bytes(b"an older export\n")
    with pytest.raises(KeyboardInterrupt):
        write_jsonl(broken_after_two_rows(), out)
    assert out.read_bytes() == b"an older export\n"
    assert [p.name for p in out.parent.iterdir()] == ["pairs.jsonl.gz"]
    call_command("export_comparisons", "--format", "pairs", "--out", str(out), verbosity=0)
    assert len(gzip.decompress(out.read_bytes()).splitlines()) == 36
    # A link (like /dev/stdout) is written through, not replaced by a file.
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "target.jsonl")
    write_jsonl(iter(records("pairs", ExportFilters())), link)
    assert link.is_symlink() and len((tmp_path / "target.jsonl").read_bytes().splitlines()) == 36


def test_out_dev_stdout_gets_only_the_rows_and_the_summary_goes_to_standard_error(ranked, capfd):
    """``--out /dev/stdout`` (or a pipe's path) is written in place: a summary printed to
    standard output would land among the rows."""
    call_command("export_comparisons", "--format", "pairs", "--out", "/dev/stdout", verbosity=0)
    captured = capfd.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 36 and all(json.loads(line)["schema_version"] for line in lines)
    assert captured.err.startswith("36 rows, ") and "-> /dev/stdout" in captured.err


def test_export_comparisons_refuses_rankings_of_red_team_data_only(ranked, tmp_path):
    refused = _export_refused(tmp_path / "rankings.jsonl", "--red-team", "only", format="rankings")
    assert refused == (
        '--red-team "only": rankings are never red-team data, so the export would be empty '
        "(corrected red-team attacks are exported as pairs and demonstrations)."
    )


def test_export_comparisons_names_the_option_of_a_date_it_cannot_read(db, tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert _export_refused(out, "--from", "2026-13-01") == (
        "--from: 2026-13-01 is not a date written YYYY-MM-DD (month must be in 1..12)."
    )
    assert _export_refused(out, "--to", "2026-02-30").startswith("--to: 2026-02-30 is not a date")


def test_export_comparisons_names_an_option_out_of_range_once(db, tmp_path):
    out = tmp_path / "pairs.jsonl"
    assert _export_refused(out, "--test-fraction", "2") == (
        "Held-out fraction (--test-fraction) must be between 0 and 0.99."
    )
    assert _export_refused(out, "--split-seed", "-1", "--min-agreement", "3") == (
        "Split seed (--split-seed) must be between 0 and 4,294,967,295.; "
        "Minimum agreement (--min-agreement) must be between 0 and 1."
    )


def test_a_stalled_writer_taken_over_midway_cannot_write_into_the_file_that_replaced_it(
    tmp_path,
):
    """An export job queued again after its heartbeat stopped runs on another worker while
    the first may still be writing; the first one stops at its next heartbeat. The file is
    the second worker's, whole, not the two interleaved."""
    from sampler.jobs.kinds import JobCancelled

    out = tmp_path / "export-1-pairs.jsonl"
    theirs = [{"worker": "second", "row": row} for row in range(1500)]

    def stalled_rows():
        for row in range(2000):
            if row == 1200:  # taken over: the second worker writes the whole file meanwhile
                write_jsonl(iter(theirs), out)
            yield {"worker": "first", "row": row}
        raise JobCancelled("pairs job 1 was taken over.")  # its next heartbeat

    with pytest.raises(JobCancelled):
        write_jsonl(stalled_rows(), out)
    assert [json.loads(line) for line in out.read_bytes().splitlines()] == theirs
    assert [path.name for path in tmp_path.iterdir()] == [out.name]


def test_out_dash_writes_the_rows_to_standard_output_and_the_summary_to_standard_error(
    ranked, tmp_path, monkeypatch
):
    import io
    import sys

    captured = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(captured, encoding="utf-8"))
    errors = io.StringIO()
    monkeypatch.chdir(tmp_path)
    call_command(
        "export_comparisons", "--format", "pairs", "--out", "-", verbosity=0, stderr=errors
    )
    lines = captured.getvalue().splitlines()
    assert len(lines) == 36 and all(json.loads(line)["schema_version"] for line in lines)
    assert errors.getvalue().startswith("36 rows, ")
    assert "-> standard output" in errors.getvalue()
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_every_format_loads_with_datasets(ranked, tmp_path):
    from datasets import Features, load_dataset

    for format in ("rankings", "pairs", "demonstrations"):
        path = tmp_path / f"{format}.jsonl.gz"
        call_command("export_comparisons", "--format", format, "--out", str(path), verbosity=0)
        with open(tmp_path / f"{format}.features.json") as file:
            features = Features.from_dict(json.load(file))
        dataset = load_dataset("json", data_files=str(path), features=features, split="train")
        assert len(dataset) > 0
        assert dataset[0]["schema_version"] == 2
    pairs = load_dataset("json", data_files=str(tmp_path / "pairs.jsonl.gz"), split="train")
    assert {"prompt", "chosen", "rejected", "rank_distance"} <= set(pairs.column_names)
    assert "margin" not in pairs.column_names


def test_pairs_train_with_trl_reward_trainer_as_is(ranked, tmp_path, micro_model_dir):
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    path = tmp_path / "pairs.jsonl"
    call_command("export_comparisons", "--format", "pairs", "--out", str(path), verbosity=0)
    dataset = load_dataset("json", data_files=str(path), split="train")
    tokenizer = AutoTokenizer.from_pretrained(micro_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(micro_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    before = [p.detach().clone() for p in model.parameters()]
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(
            output_dir=str(tmp_path / "rm"),
            max_steps=3,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
            report_to="none",
            use_cpu=True,
            save_strategy="no",
            logging_steps=1,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_export_service_writes_file_with_hash_and_counts(ranked, admin_user):
    export = export_services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    export = job_run_inline(job=export)
    assert export.status == DatasetExport.Status.SUCCEEDED and export.progress == 1.0
    data = Path(export.file_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == export.sha256 and len(data) == export.size_bytes
    lines = gzip.decompress(data).splitlines()
    assert len(lines) == export.row_count == 36
    assert json.loads(lines[0])["schema_version"] == 2
    # A message delivered again finds it finished and changes nothing.
    assert job_execute(kind_name="export", job_id=export.pk, token=export.publish_token) is None
    export.refresh_from_db()
    assert hashlib.sha256(Path(export.file_path).read_bytes()).hexdigest() == export.sha256


def test_pseudonyms_are_keyed_by_their_own_key_not_by_secret_key(settings):
    import hmac

    settings.EXPORT_PSEUDONYM_KEY = "p" * 40
    expected = "r-" + hmac.new(b"p" * 40, b"ranker:7", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(7, enabled=True) == expected
    settings.SECRET_KEY = "another-secret-key-" + "s" * 30
    assert pseudonym(7, enabled=True) == expected
    # An existing deployment keeps the pseudonyms its SECRET_KEY gave by naming that value.
    settings.EXPORT_PSEUDONYM_KEY = settings.SECRET_KEY
    old = "r-" + hmac.new(settings.SECRET_KEY.encode(), b"ranker:7", hashlib.sha256).hexdigest()
    assert pseudonym(7, enabled=True) == old[:18]


def test_the_split_takes_the_same_bounds_on_every_path(ranked, tmp_path, admin_client_):
    """test_fraction at most 0.99 and split_seed 0..2**32-1, from the command line, the API,
    the Exports page, the Training page and a training config alike."""
    from django.core.management.base import CommandError

    from ranking.exports.filters import MAX_SPLIT_SEED, MAX_TEST_FRACTION
    from sampler.runs.forms import TrainingRunForm
    from sampler.training.config import MAX_TEST_FRACTION as TRAINING_MAX
    from sampler.training.config import ConfigError, SFTConfig

    assert MAX_TEST_FRACTION == TRAINING_MAX == 0.99 and MAX_SPLIT_SEED == 2**32 - 1
    out = str(tmp_path / "pairs.jsonl")
    for option, value in (("--split-seed", "-5"), ("--split-seed", str(2**32)),
                          ("--test-fraction", "0.995")):  # fmt: skip
        with pytest.raises(CommandError, match=option):
            call_command("export_comparisons", "--format", "pairs", "--out", out, option, value)
    call_command(
        "export_comparisons", "--format", "pairs", "--out", out,
        "--split-seed", str(2**32 - 1), "--test-fraction", "0.99", verbosity=0,
    )  # fmt: skip
    stream = "/api/exports/stream/?format=pairs"
    api = admin_client_.get(f"{stream}&split_seed={2**32 - 1}&test_fraction=0.99")
    assert api.status_code == 200
    assert admin_client_.get(f"{stream}&split_seed=-1").status_code == 400
    form = TrainingRunForm(data={"split_seed": str(2**32 - 1), "test_fraction": "0.99"})
    form.is_valid()
    assert "split_seed" not in form.errors and "test_fraction" not in form.errors
    # Out of range, the Training page says it as the Exports page does.
    form = TrainingRunForm(data={"split_seed": str(2**32)})
    form.is_valid()
    assert form.errors["split_seed"] == ["Split seed must be between 0 and 4,294,967,295."]
    from sampler.comparisons.forms import ComparisonForm

    compare = ComparisonForm(data={"split_seed": str(2**32)})
    compare.is_valid()
    assert compare.errors["split_seed"] == ["Split seed must be between 0 and 4,294,967,295."]
    with pytest.raises(ConfigError):
        SFTConfig.from_dict({"test_fraction": 0.995})
    assert SFTConfig.from_dict({"test_fraction": 0.99}).test_fraction == 0.99


def test_a_model_version_filter_naming_a_reward_model_is_refused_not_an_empty_export(
    ranked, tmp_path, admin_client_
):
    """Tasks are sampled by policies: a reward version would quietly match nothing."""
    from sampler.models import ModelVersion

    reward = ModelVersion.objects.create(name="rm-1", path="rm-1", kind=ModelVersion.Kind.REWARD)
    out = tmp_path / "pairs.jsonl"
    refused = _export_refused(out, "--model-version", "rm-1")
    assert refused == "Not a policy (tasks are sampled by policies): rm-1."
    assert not out.exists()
    stream = admin_client_.get(
        "/api/exports/stream/", {"format": "pairs", "model_version_id": reward.pk}
    )
    assert stream.status_code == 400
    assert stream.json() == {
        "model_version_id": [f"Not a policy (tasks are sampled by policies): {reward.pk}."]
    }


def test_an_export_run_again_starts_its_progress_from_zero(ranked, admin_user, monkeypatch):
    """A retried export (or one queued again after its worker stopped) writes its file from
    the start: its bar does not stay at the earlier attempt's progress meanwhile."""
    export = export_services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    # An attempt that failed after writing part of the file, then a retry.
    DatasetExport.objects.filter(pk=export.pk).update(
        status=DatasetExport.Status.FAILED, progress=0.6, error="disk full"
    )
    job_retry(job=export)
    assert DatasetExport.objects.get(pk=export.pk).progress == 0.0  # queued, not 60 % done
    # Queued again after its worker stopped heartbeating (no retry): the run starts from zero.
    DatasetExport.objects.filter(pk=export.pk).update(progress=0.6)
    seen = []

    def records_watched(format, filters, *, skipped=None):
        seen.append(DatasetExport.objects.get(pk=export.pk).progress)
        yield from records(format, filters, skipped=skipped)

    monkeypatch.setattr(export_services, "records", records_watched)
    assert job_run_inline(job=export).status == DatasetExport.Status.SUCCEEDED
    assert seen == [0.0]


def test_the_consensus_is_over_the_rankings_exported_not_those_a_flag_filter_drops(db):
    writer = quick_trainer("writer")
    first, second = quick_trainer("ranker0"), quick_trainer("ranker1")
    version = model_version_create("policy-1")
    # Both agree on three other tasks, so each has the same trust, above chance.
    for index in range(3):
        source = finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf
        other = task_from_source(source, model_version=version)
        for ranker in (first, second):
            rank(other, ranker, [[0], [1], [2], [3]])
    source = finished_conversation(writer, turns=("q?", "a.")).active_leaf
    task = task_from_source(source, model_version=version)
    rank(task, first, [[0], [1], [2], [3]], flags={3: ["harmful"]})
    kept = rank(task, second, [[3], [2], [1], [0]])
    ids = candidate_ids(task)

    (record,) = [
        record
        for record in ranking_records(ExportFilters(exclude_flags=("harmful",)))
        if record["task_id"] == task.pk
    ]
    assert record["ranking_id"] == kept.pk
    # The one ranking written is the whole consensus: its own order, not a tie with the dropped one.
    assert record["consensus"] == [[ids[3]], [ids[2]], [ids[1]], [ids[0]]]
    both = [r for r in ranking_records(ExportFilters()) if r["task_id"] == task.pk]
    assert [r["consensus"] for r in both] == [[sorted(ids)]] * 2


def test_an_export_cancelled_while_its_file_is_written_leaves_no_file(
    ranked, admin_user, monkeypatch, settings, tmp_path
):
    """A cancel that lands while the rows are written (a small export meets no heartbeat) was
    noticed only when the export tried to succeed: its file stayed, named by no row."""
    settings.EXPORT_ROOT = tmp_path
    export = export_services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    write_features = export_services.write_features

    def written_then_cancelled(*args, **kwargs):
        write_features(*args, **kwargs)
        job_cancel(job=DatasetExport.objects.get(pk=export.pk))

    monkeypatch.setattr(export_services, "write_features", written_then_cancelled)
    assert job_run_inline(job=export).status == DatasetExport.Status.CANCELLED
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


def test_a_rankings_flags_are_listed_by_candidate_id_as_a_number():
    from ranking.exports.rankings import flag_records

    stored = {str(pk): {"flags": ["harmful"], "note": f"n{pk}"} for pk in (10, 9, 100)}
    assert [flag["candidate_id"] for flag in flag_records(stored)] == [9, 10, 100]
    assert flag_records(None) == []


def _two_ranked_tasks_one_without_its_job():
    """Two tasks ranked by two trainers each; the first one's generation job is deleted (its
    task keeps its candidates, but the prompt they answer is gone with the job)."""
    writer = quick_trainer("writer")
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    version = model_version_create("v1")
    tasks = [
        task_from_source(finished_conversation(writer).active_leaf, model_version=version)
        for _ in range(2)
    ]
    for task in tasks:
        for ranker in rankers:
            rank(task, ranker, [[0], [1], [2], [3]])
    tasks[0].generation_job.delete()
    return tasks


@pytest.mark.parametrize("format", ["rankings", "pairs"])
def test_a_task_whose_prompt_is_gone_is_skipped_and_counted_never_written_empty(db, format):
    _gone, kept = _two_ranked_tasks_one_without_its_job()
    skipped = Counter()

    rows = list(records(format, ExportFilters(), skipped=skipped))

    assert rows and all(row["prompt"] for row in rows)
    assert {row["task_id"] for row in rows} == {kept.pk}
    assert skipped == {"rankings_without_prompt": 2}


def test_an_export_job_records_the_rankings_it_skipped(db, admin_user):
    _two_ranked_tasks_one_without_its_job()
    export = export_services.dataset_export_create(
        created_by=admin_user, format="rankings", filters=ExportFilters(), queue=False
    )

    export = job_run_inline(job=export)

    assert export.status == DatasetExport.Status.SUCCEEDED
    assert export.row_count == 2
    assert export.skipped == {"rankings_without_prompt": 2}
    lines = gzip.decompress(Path(export.file_path).read_bytes()).splitlines()
    assert all(json.loads(line)["prompt"] for line in lines)


def test_the_command_reports_the_rankings_it_skipped(db, tmp_path):
    _two_ranked_tasks_one_without_its_job()
    errors = io.StringIO()

    call_command("export_comparisons", format="pairs", out=str(tmp_path / "p.jsonl"), stderr=errors)

    assert "skipped 2 rankings without a prompt" in errors.getvalue()
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert rows and all(row["prompt"] for row in rows)


def test_a_count_of_one_is_said_in_the_singular():
    """ "1 rankings without a prompt (their task's generation job was deleted)"."""
    assert skipped_summary(
        {"rankings_without_prompt": 1, "red_team_attacks_without_prompt": 3}
    ) == (
        "1 ranking without a prompt (its task's generation job was deleted); "
        "3 red-team attacks without a prompt"
    )


def test_a_stalled_export_worker_finishing_after_its_takeover_leaves_the_file_the_row_names(
    db, admin_user, monkeypatch, settings, tmp_path
):
    """A worker stalled past its heartbeat, taken over, and waking after its last progress
    write (a small export meets no heartbeat) finished its file all the same: it replaced the
    file the second worker wrote and its row describes, so the download no longer matched the
    row's row count and sha256. Its files are its own until it holds the row as it succeeds."""
    settings.EXPORT_ROOT = tmp_path
    export = export_services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    attempts = []

    def rows(format, filters, *, skipped=None):
        attempts.append(format)
        if len(attempts) == 1:
            yield {"worker": "first", "row": 0}
            # Stalled here: the sweeper's takeover, and another worker writes the whole file.
            DatasetExport.objects.filter(pk=export.pk).update(
                heartbeat_at=timezone.now() - timedelta(seconds=2 * settings.JOB_STALE_AFTER)
            )
            second = job_run_inline(job=export)
            assert second.status == DatasetExport.Status.SUCCEEDED and second.row_count == 1
            yield {"worker": "first", "row": 1}
        else:
            yield {"worker": "second", "row": 0}

    monkeypatch.setattr(export_services, "records", rows)
    job_run_inline(job=export)

    export.refresh_from_db()
    written = Path(export.file_path).read_bytes()
    assert export.status == DatasetExport.Status.SUCCEEDED and len(attempts) == 2
    lines = gzip.decompress(written).splitlines()
    assert [json.loads(line)["worker"] for line in lines] == ["second"]
    assert hashlib.sha256(written).hexdigest() == export.sha256
    # Nothing of the first worker's is left beside it.
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"export-{export.pk}-pairs.features.json",
        f"export-{export.pk}-pairs.jsonl.gz",
    ]


def _ranked_tasks_of_two_conversations():
    """Two tasks on two finished conversations of one writer, each ranked by two trainers (the
    first ranking of each flags its last reply harmful)."""
    writer = quick_trainer("writer")
    rankers = [quick_trainer(f"ranker{i}") for i in range(2)]
    version = model_version_create("v1")
    tasks = [
        task_from_source(
            finished_conversation(writer, turns=(f"q{index}?", f"a{index}.")).active_leaf,
            model_version=version,
        )
        for index in range(2)
    ]
    for task in tasks:
        for index, ranker in enumerate(rankers):
            rank(task, ranker, [[0], [1], [2], [3]], flags={3: ["harmful"]} if index == 0 else None)
    return writer, tasks


def _exported_task_ids(admin_client_) -> dict[str, set[int]]:
    """The tasks each reader of rankings takes data from: the export formats, the streaming
    API and the training readers (reward records, KTO records of flags)."""
    streamed = admin_client_.get("/api/exports/stream/", {"format": "rankings"})
    assert streamed.status_code == 200
    lines = b"".join(streamed.streaming_content).splitlines()
    return {
        "rankings": {row["task_id"] for row in records("rankings", ExportFilters())},
        "pairs": {row["task_id"] for row in records("pairs", ExportFilters())},
        "aggregated pairs": {
            row["task_id"] for row in records("pairs", ExportFilters(pair_mode="aggregated"))
        },
        "stream": {json.loads(line)["task_id"] for line in lines},
        "reward": {
            row["task_id"] for row in reward_records(ExportFilters(), sources=("rankings",))
        },
        "kto flags": {
            Ranking.objects.get(pk=row["ranking_id"]).task_id
            for row in flag_kto_records(ExportFilters())
        },
    }


def test_a_discarded_conversations_rankings_are_left_out_of_exports_and_their_preview(
    admin_client_,
):
    writer, (discarded, kept) = _ranked_tasks_of_two_conversations()
    conversation = discarded.source_message.conversation
    conversation = labeling_services.conversation_reopen(conversation=conversation, user=writer)
    labeling_services.conversation_discard(conversation=conversation, user=writer)

    exported = _exported_task_ids(admin_client_)

    assert exported == {key: {kept.pk} for key in exported}
    # As the demonstrations leave the conversation out.
    assert {row["conversation_id"] for row in records("demonstrations", ExportFilters())} == {
        kept.source_message.conversation_id
    }
    # The preview and the export's progress count what is written: the kept task's rankings.
    for format in ("rankings", "pairs"):
        rows = list(records(format, ExportFilters()))
        preview = export_preview_get(format=format, filters=ExportFilters())
        assert (preview.sources, sum(preview.rows.values())) == (2, len(rows))
        assert source_count(format, ExportFilters()) == 2
    aggregated = export_preview_get(format="pairs", filters=ExportFilters(pair_mode="aggregated"))
    assert aggregated.sources == 1


def test_a_reopened_conversations_rankings_are_left_out_until_it_is_finished_again(
    admin_client_,
):
    writer, (reopened, kept) = _ranked_tasks_of_two_conversations()
    conversation = labeling_services.conversation_reopen(
        conversation=reopened.source_message.conversation, user=writer
    )

    exported = _exported_task_ids(admin_client_)

    assert exported == {key: {kept.pk} for key in exported}
    assert export_preview_get(format="rankings", filters=ExportFilters()).sources == 2

    labeling_services.conversation_finish(conversation=conversation, user=writer)
    exported = _exported_task_ids(admin_client_)
    assert exported == {key: {reopened.pk, kept.pk} for key in exported}
    assert export_preview_get(format="rankings", filters=ExportFilters()).sources == 4
