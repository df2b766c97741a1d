"""A corrected attack is one demonstration and one preference pair in the exports."""

from labeling.conversations import services
from ranking.exports.demonstrations import demonstration_records
from ranking.exports.filters import ExportFilters
from ranking.exports.pairs import pair_records
from ranking.exports.pipeline import write_jsonl
from ranking.rank import services as ranking_services
from ranking.rank.services import RankingInput
from sampler.models import ModelVersion
from tests.labeling.redteam.conftest import CORRECTION, FAILED, PROMPT, attack_and_correct
from tests.ranking.conftest import ready_task  # noqa: F401 (a fixture)


def test_a_red_team_success_gives_exactly_one_demonstration_and_one_pair(red_team, trainer):
    conversation, _, reply = red_team
    attack, _ = attack_and_correct(trainer, reply)
    # Nothing is exported while the conversation is being written.
    assert list(pair_records(ExportFilters())) == []
    services.conversation_finish(conversation=conversation, user=trainer)

    demonstrations = list(demonstration_records(ExportFilters()))
    assert len(demonstrations) == 1
    (demonstration,) = demonstrations
    assert demonstration["messages"] == [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": CORRECTION},
    ]
    assert demonstration["red_team"] is True and demonstration["attack_id"] == attack.pk
    assert demonstration["guideline_version"] == 1

    pairs = list(pair_records(ExportFilters()))
    assert len(pairs) == 1
    (pair,) = pairs
    assert pair["prompt"] == [{"role": "user", "content": PROMPT}]
    assert pair["chosen"] == [{"role": "assistant", "content": CORRECTION}]
    assert pair["rejected"] == [{"role": "assistant", "content": FAILED}]
    assert pair["red_team"] is True and pair["attack_id"] == attack.pk
    assert pair["attack_category"] == "jailbreak" and pair["guideline_version"] == 1
    assert pair["conversation_id"] == conversation.pk and pair["votes"] == 1
    assert pair["rank_distance"] == 1.0 and pair["schema_version"] == 2

    assert len(list(pair_records(ExportFilters(pair_mode="aggregated")))) == 1
    assert len(list(pair_records(ExportFilters(red_team="only")))) == 1
    assert len(list(demonstration_records(ExportFilters(red_team="only")))) == 1
    assert list(pair_records(ExportFilters(red_team="exclude"))) == []
    assert list(demonstration_records(ExportFilters(red_team="exclude"))) == []
    assert list(pair_records(ExportFilters(guideline_versions=(2,)))) == []
    assert list(pair_records(ExportFilters(exclude_trainer_ids=(trainer.pk,)))) == []
    other = ModelVersion.objects.create(name="policy-v2", path="/elsewhere")
    assert list(pair_records(ExportFilters(model_version_ids=(other.pk,)))) == []


def test_a_correction_edited_into_a_new_branch_is_the_one_exported(red_team, trainer):
    conversation, _, reply = red_team
    attack, correction = attack_and_correct(trainer, reply)
    better = services.message_branch(
        original=correction, author=trainer, content=f"{CORRECTION} (improved)"
    )
    attack.refresh_from_db()
    assert attack.correction == better
    services.conversation_finish(conversation=conversation, user=trainer)
    (pair,) = pair_records(ExportFilters())
    assert pair["chosen"] == [{"role": "assistant", "content": f"{CORRECTION} (improved)"}]
    by_attack = {
        record["messages"][-1]["content"]: record["attack_id"]
        for record in demonstration_records(ExportFilters(red_team="only"))
    }
    assert by_attack.get(f"{CORRECTION} (improved)") == attack.pk
    assert by_attack.get(CORRECTION) is None


def test_red_team_pairs_share_the_ranking_pairs_schema_and_load_with_datasets(
    ready_task,  # noqa: F811
    red_team,
    trainer,
    tmp_path,
):
    # Heavy: datasets (with pyarrow) loads only for this test.
    from datasets import load_dataset

    conversation, _, reply = red_team
    attack_and_correct(trainer, reply)
    services.conversation_finish(conversation=conversation, user=trainer)
    assignment = ranking_services.task_claim_next(trainer=trainer)
    ids = sorted(assignment.task.candidates.values_list("id", flat=True))
    ranking_services.ranking_submit(
        assignment=assignment, trainer=trainer, ranking=RankingInput([[i] for i in ids])
    )
    pairs = list(pair_records(ExportFilters()))
    tagged = [p for p in pairs if p["red_team"]]
    assert len(tagged) == 1 and len(pairs) == 7
    assert all(set(p) == set(tagged[0]) for p in pairs)
    path = tmp_path / "pairs.jsonl"
    write_jsonl(iter(pairs), path)
    dataset = load_dataset("json", data_files=str(path), split="train")
    assert len(dataset) == 7 and sum(dataset["red_team"]) == 1
