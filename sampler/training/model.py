"""Loading policies, building reward models from them, and reading reward scores.

A reward model is a stock ``AutoModelForSequenceClassification`` with ``num_labels=1`` whose
backbone starts as the policy's. During training it is wrapped in ``RewardScorer``, which reads
the score at the last non-pad token itself (from the attention mask), instead of the model's own
pooling, which looks for the first pad id and is wrong when pad == eos.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import transformers
from accelerate import init_empty_weights
from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

# Names the backbones of common architectures give their final norm (GPT-2, Llama, OPT/NeoX).
FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm")


@contextlib.contextmanager
def quiet_loading():
    """Loading a causal LM as a classifier reports a new head and an unused LM head: expected."""
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.chat_template is None:
        raise ValueError(f"{path}: the tokenizer has no chat template.")
    if tokenizer.pad_token_id is None:
        # Safe here: every mask is built from lengths, never from the pad id.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def turn_end_ids(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokens that end an assistant turn: the generation config's eos ids (what sampling
    stops at, e.g. Llama 3's ``<|eot_id|>``) and the tokenizer's eos."""
    ids: list[int] = []
    try:
        configured = GenerationConfig.from_pretrained(str(path)).eos_token_id
    except OSError:  # no generation_config.json (a reward model, a bare checkpoint)
        configured = None
    ids.extend([configured] if isinstance(configured, int) else list(configured or []))
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def load_policy(path: str | Path) -> PreTrainedModel:
    # float32 weights: the optimizer keeps full precision; Accelerate adds autocast for bf16.
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)


def build_reward_model(path: str | Path, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """A one-output classifier on the backbone found at ``path`` (a policy or a reward model)."""
    with quiet_loading():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(path), num_labels=1, dtype=torch.float32
        )
    # Stock inference (``model(**batch).logits``) pools at the last non-pad id: it needs the id.
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def unwrap_adapters(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (LoRA layers stay injected in it)."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) else model


def score_head(model: PreTrainedModel) -> nn.Module:
    """The classifier head (under LoRA, PEFT's wrapper around its trainable copy)."""
    head = getattr(unwrap_adapters(model), "score", None)
    if not isinstance(head, nn.Linear) and not hasattr(head, "modules_to_save"):
        raise ValueError(f"{type(model).__name__} has no `score` head to read rewards from.")
    return head


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(N,) index of each row's last attended position: right, left or no padding alike."""
    positions = torch.arange(attention_mask.size(-1), device=attention_mask.device)
    return torch.where(attention_mask.bool(), positions, -1).amax(dim=-1).clamp(min=0)


def last_token_scores(values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``values`` (N, T) or (N, T, 1) read at each row's last non-pad token: (N,)."""
    if values.dim() == 3:
        values = values.squeeze(-1)
    rows = torch.arange(values.size(0), device=values.device)
    return values[rows, last_token_index(attention_mask)]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token, so left padding shifts nothing."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class RewardScorer(nn.Module):
    """Wraps a sequence-classification model: (ids, mask) -> one score per sequence, (N,).

    The backbone runs once over all sequences; the head reads only the last real token's
    hidden state. A module of its own so that Accelerate / DDP wraps the whole forward.
    """

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        score_head(model)  # fail early on a model without one
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = (
            unwrap_adapters(self.model)
            .base_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids_from_mask(attention_mask),
                use_cache=False,
            )
            .last_hidden_state
        )
        rows = torch.arange(hidden.size(0), device=hidden.device)
        last_hidden = hidden[rows, last_token_index(attention_mask)]
        return score_head(self.model)(last_hidden).squeeze(-1).float()


class CausalLM(nn.Module):
    """(ids, mask) -> logits; a module of its own for the same reason as ``RewardScorer``."""

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).logits


@torch.no_grad()
def shift_reward_scores(model: PreTrainedModel, offset: float) -> str:
    """Subtract ``offset`` from every score the model gives, in its stock-loadable weights.

    Returns where the shift went. A head with a bias takes it there. GPT-2-style heads have no
    bias (``score`` is bias-free), but the final norm's bias feeds the head linearly: moving it
    by ``offset * w / |w|^2`` (w: the head's weights) lowers every score by exactly ``offset``.
    """
    head = score_head(model)
    if head.bias is not None:
        head.bias -= offset
        return "score.bias"
    weights = head.weight[0]
    for name in FINAL_NORM_NAMES:
        norm = getattr(model.base_model, name, None)
        bias = getattr(norm, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.shape == weights.shape:
            bias -= offset * weights / weights.dot(weights)
            return f"{name}.bias"
    raise ValueError(
        f"{type(model).__name__}: neither the score head nor the final norm has a bias to shift."
    )


# ---- LoRA (PEFT) ------------------------------------------------------------------------------


def lora_targets(value: str) -> list[str] | None:
    """Module names from a comma-separated setting; None lets PEFT pick the architecture's."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    return names or None


def missing_lora_targets(path: str | Path, targets: str, *, task: str = "causal_lm") -> list[str]:
    """The names of ``targets`` (comma-separated) that match no module of the model at
    ``path``, as PEFT matches a name: the module's whole name or its last dotted parts. The
    model is built from its config on the meta device (``task`` "reward": with a score head, as
    a reward run builds it), so no weight is read. A model that cannot be built here has none
    found missing (its trainer reports it)."""
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
        with init_empty_weights(), quiet_loading():
            if task == "reward":
                config.num_labels = 1
                model = AutoModelForSequenceClassification.from_config(config)
            else:
                model = AutoModelForCausalLM.from_config(config)
    except (ValueError, OSError, KeyError, TypeError, ImportError):
        # A config this transformers cannot build here (an architecture it does not know, one
        # that needs remote code): its trainer says what is wrong when it loads it.
        return []
    names = [name for name, _ in model.named_modules()]
    return [
        target
        for target in lora_targets(targets) or []
        if not any(name == target or name.endswith(f".{target}") for name in names)
    ]


def apply_lora(model: PreTrainedModel, config, *, task: str = "causal_lm") -> nn.Module:
    """``model`` with LoRA adapters when ``config.lora_r`` > 0 (else unchanged): only the
    low-rank weights train (and, for a reward model, its score head: PEFT keeps a trainable copy
    of the classifier for SEQ_CLS)."""
    if not config.lora_r:
        return model
    try:
        # PEFT is an optional dependency (`pip install 'tandem[lora]'`): imported only by runs
        # that ask for LoRA, so every other run works without it.
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as error:
        raise ValueError("LoRA needs PEFT: pip install 'tandem[lora]' (or peft).") from error
    from transformers.pytorch_utils import Conv1D

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=lora_targets(config.lora_targets),
        # GPT-2's Conv1D layers store their weights transposed; PEFT would guess it with a warning.
        fan_in_fan_out=any(isinstance(module, Conv1D) for module in model.modules()),
        task_type=TaskType.SEQ_CLS if task == "reward" else TaskType.CAUSAL_LM,
    )
    with quiet_loading():
        return get_peft_model(model, lora)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and callable(getattr(model, "merge_and_unload", None))


# Beside the merged weights in a LoRA run's output directory: the adapter alone (PEFT format).
ADAPTER_DIR = "adapter"


def merge_lora(model: nn.Module, output_dir: Path | None) -> tuple[nn.Module, dict | None]:
    """(a plain transformers model, what was done): a LoRA model's adapter is saved under
    ``output_dir / ADAPTER_DIR`` (when given) and merged into the weights, so the saved model
    serves and loads with stock ``from_pretrained``; any other model comes back as it is."""
    if not is_lora(model):
        return model, None
    peft_config = model.peft_config["default"]
    info = {
        "r": peft_config.r,
        "alpha": peft_config.lora_alpha,
        "dropout": peft_config.lora_dropout,
        "targets": sorted(peft_config.target_modules or []),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "adapter": None,
    }
    if output_dir is not None:
        model.save_pretrained(str(Path(output_dir) / ADAPTER_DIR))
        info["adapter"] = ADAPTER_DIR
    return model.merge_and_unload(), info
