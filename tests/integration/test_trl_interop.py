"""Stock Hugging Face code on the app's own exports and checkpoints: TRL's RewardTrainer,
DPOTrainer and SFTTrainer (assistant-only loss) train a few steps without dtype errors, and a
saved reward model scores the same in a stock batched forward as in the app."""

from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from ranking.exports.filters import ExportFilters
from sampler.registry.models import ModelVersion
from sampler.runs import services as training_services
from sampler.training.data import pad_right, reply_ids
from sampler.training.model import RewardScorer
from tests.ranking.conftest import ranked  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

EMBEDDED = Path(__file__).resolve().parents[2] / "assets" / "models" / "tandem-chitchat-tiny"
TRAINING = {
    "report_to": "none",
    "use_cpu": True,
    "save_strategy": "no",
    "max_steps": 2,
    "per_device_train_batch_size": 2,
    "learning_rate": 1e-4,
    "logging_steps": 1,
    "disable_tqdm": True,
}


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.MODEL_ROOT = tmp_path / "models"
    settings.EXPORT_ROOT = tmp_path / "exports"


def _export(format: str, path: Path):
    """The app's export, train split only (every README snippet trains on train)."""
    from datasets import load_dataset

    call_command(
        "export_comparisons", "--format", format, "--out", str(path), "--test-fraction", "0",
        verbosity=0,
    )  # fmt: skip
    dataset = load_dataset("json", data_files=str(path), split="train")
    return dataset.filter(lambda record: record["split"] == "train")


def _trained(name: str, kind: str, **config) -> ModelVersion:
    run = training_services.training_run_create(
        kind=kind,
        config={"max_steps": 2, "batch_size": 2, "max_length": 64, **config},
        filters=ExportFilters(test_fraction=0.0),
        output_name=name,
        queue=False,
    )
    run = training_services.training_run_run_inline(run_id=run.pk)
    assert run.status == "succeeded", run.error
    return run.output_versions.get()


def _changed(before: dict, model) -> bool:
    return any(not torch.equal(before[n], p) for n, p in model.state_dict().items() if n in before)


@pytest.mark.usefixtures("ranked")
def test_trl_reward_trainer_continues_the_apps_reward_checkpoint_on_its_pairs_export(tmp_path):
    from trl import RewardConfig, RewardTrainer

    reward = _trained("rm-app", "reward")
    pairs = _export("pairs", tmp_path / "pairs.jsonl")
    # Taken as is: no column TRL would read as a loss margin (the README's snippet).
    assert "margin" not in pairs.column_names
    model = AutoModelForSequenceClassification.from_pretrained(reward.path)
    assert next(model.parameters()).dtype == torch.float32
    tokenizer = AutoTokenizer.from_pretrained(reward.path)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(output_dir=str(tmp_path / "trl-rm"), **TRAINING),
        train_dataset=pairs,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss)) and _changed(before, model)


@pytest.mark.usefixtures("ranked")
def test_stock_batched_scoring_of_a_saved_reward_model_matches_the_app():
    reward = _trained("rm-scores", "reward")
    model = AutoModelForSequenceClassification.from_pretrained(reward.path).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward.path)
    assert tokenizer.padding_side == "right"
    conversations = [
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        [
            {"role": "user", "content": "what did you do today, tell me everything"},
            {"role": "assistant", "content": "i went to the park and then read a long book"},
        ],
        [{"role": "user", "content": "ok"}, {"role": "assistant", "content": "sure thing!"}],
    ]
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    with torch.no_grad():
        batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        stock = model(**batch).logits.squeeze(-1)
        ids = [reply_ids(tokenizer, c[:-1], c[-1]["content"]) for c in conversations]
        ours = RewardScorer(model)(*pad_right(ids, pad_id=tokenizer.pad_token_id))
    torch.testing.assert_close(stock, ours, atol=1e-5, rtol=1e-5)


@pytest.mark.usefixtures("ranked")
def test_trl_dpo_trainer_starts_from_the_embedded_policy_and_from_the_apps_dpo_checkpoint(
    tmp_path,
):
    from trl import DPOConfig, DPOTrainer

    pairs = _export("pairs", tmp_path / "pairs.jsonl").select_columns(
        ["prompt", "chosen", "rejected"]
    )
    dpo = _trained("dpo-app", "dpo", mode="listwise")
    for start in (EMBEDDED, Path(dpo.path)):
        model = AutoModelForCausalLM.from_pretrained(start)  # stock loading: dtype from config
        assert next(model.parameters()).dtype == torch.float32
        tokenizer = AutoTokenizer.from_pretrained(start)
        before = {n: p.clone() for n, p in model.state_dict().items()}
        trainer = DPOTrainer(
            model=model,
            args=DPOConfig(output_dir=str(tmp_path / f"trl-dpo-{start.name}"), **TRAINING),
            train_dataset=pairs,
            processing_class=tokenizer,
        )
        result = trainer.train()
        assert torch.isfinite(torch.tensor(result.training_loss)) and _changed(before, model)


@pytest.mark.usefixtures("ranked")
def test_trl_sft_trainer_with_assistant_only_loss_on_the_demonstrations_export(tmp_path):
    from trl import SFTConfig, SFTTrainer

    demonstrations = _export("demonstrations", tmp_path / "demos.jsonl").select_columns(
        ["messages"]
    )
    sft = _trained("sft-app", "sft")
    model = AutoModelForCausalLM.from_pretrained(sft.path)
    tokenizer = AutoTokenizer.from_pretrained(sft.path)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(output_dir=str(tmp_path / "trl-sft"), assistant_only_loss=True, **TRAINING),
        train_dataset=demonstrations,
        processing_class=tokenizer,
    )
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss)) and _changed(before, model)
