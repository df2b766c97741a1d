import gzip
import hashlib
import json
import random
from pathlib import Path

from django.core.management import call_command

from labeling import services as labeling_services
from ranking import services
from ranking.exports import ExportFilters, pair_records, ranking_records, records, split_of
from ranking.models import DatasetExport
from ranking.services import RankingInput
from tests.ranking.conftest import finished_conversation


def test_per_ranker_pairs_follow_the_ranking(ranked):
    pairs = list(pair_records(ExportFilters()))
    # 3 tasks x 2 rankers x C(4,2) = 36 pairs, no ties.
    assert len(pairs) == 36
    pair = pairs[0]
    assert pair["schema_version"] == 1
    assert pair["prompt"][-1]["role"] == "user"
    assert pair["chosen"][0]["role"] == "assistant" and pair["rejected"][0]["role"] == "assistant"
    assert pair["chosen"] != pair["rejected"]
    assert all(p["margin"] >= 1 for p in pairs)
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


def test_aggregated_pairs_keep_the_majority_and_respect_min_agreement(ranked):
    aggregated = list(pair_records(ExportFilters(pair_mode="aggregated")))
    # The two rankers disagree on one pair per task: no majority there.
    assert len(aggregated) == 3 * 5
    assert all(p["votes"] == 2 and p["agreement"] == 1.0 for p in aggregated)
    assert len(list(pair_records(ExportFilters(pair_mode="aggregated", min_agreement=1.0)))) == 15


def test_exclude_flagged_and_trainers(ranked):
    _, rankers = ranked
    without_harmful = list(pair_records(ExportFilters(exclude_flags=("harmful",))))
    # The flagged reply is dropped from every pair of its task, for every ranker.
    assert len(without_harmful) == 3 * 2 * 3
    only_second = list(ranking_records(ExportFilters(exclude_trainer_ids=(rankers[0].pk,))))
    assert len(only_second) == 3
    without_flagged = list(ranking_records(ExportFilters(exclude_flags=("harmful",))))
    assert [r["ranking_id"] for r in without_flagged] == [r["ranking_id"] for r in only_second]


def test_split_is_by_conversation_and_deterministic(ranked):
    rows = list(ranking_records(ExportFilters(test_fraction=0.5, split_seed=3)))
    by_conversation = {}
    for row in rows:
        by_conversation.setdefault(row["conversation_id"], set()).add(row["split"])
        assert row["split"] == split_of(row["conversation_id"], seed=3, test_fraction=0.5)
    assert all(len(sides) == 1 for sides in by_conversation.values())
    train = list(ranking_records(ExportFilters(test_fraction=0.5, split_seed=3, split="train")))
    test = list(ranking_records(ExportFilters(test_fraction=0.5, split_seed=3, split="test")))
    assert len(train) + len(test) == len(rows)
    assert not {r["conversation_id"] for r in train} & {r["conversation_id"] for r in test}


def test_ranking_records_carry_provenance(ranked):
    row = next(iter(ranking_records(ExportFilters())))
    assert len(row["candidates"]) == 4
    sampled = [c for c in row["candidates"] if not c["is_source"]]
    assert all(c["sampling"]["seed"] is not None and c["sampling"]["params"] for c in sampled)
    assert all(c["model_version"] == "micro" for c in sampled)
    assert sorted(row["presentation_order"]) == sorted(c["candidate_id"] for c in row["candidates"])
    assert row["duration_ms"] >= 0 and row["submitted_at"]


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


def test_every_format_loads_with_datasets(ranked, tmp_path):
    from datasets import load_dataset

    for format in ("rankings", "pairs", "demonstrations"):
        path = tmp_path / f"{format}.jsonl.gz"
        call_command("export_comparisons", "--format", format, "--out", str(path), verbosity=0)
        dataset = load_dataset("json", data_files=str(path), split="train")
        assert len(dataset) > 0
        assert dataset[0]["schema_version"] == 1
    pairs = load_dataset("json", data_files=str(tmp_path / "pairs.jsonl.gz"), split="train")
    assert {"prompt", "chosen", "rejected", "margin"} <= set(pairs.column_names)


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
    export = services.dataset_export_create(
        created_by=admin_user, format="pairs", filters=ExportFilters(), queue=False
    )
    export = services.dataset_export_run(export_id=export.pk)
    assert export.status == DatasetExport.Status.SUCCEEDED and export.progress == 1.0
    data = Path(export.file_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == export.sha256 and len(data) == export.size_bytes
    lines = gzip.decompress(data).splitlines()
    assert len(lines) == export.row_count == 36
    assert json.loads(lines[0])["schema_version"] == 1
    # Running it again changes nothing.
    assert services.dataset_export_run(export_id=export.pk).sha256 == export.sha256
