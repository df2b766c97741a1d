"""SFT, reward, PPO, DPO and KTO training: plain torch + transformers + Accelerate, no Django.

Modules, in reading order: ``config`` and ``ppo_config`` (what can be set), ``records`` and
``data`` (records -> token tensors), ``model`` (loading, scoring, LoRA), ``losses`` (pure
tensor helpers), ``loop`` (the shared loop, checkpoints, progress), ``preference`` (prompts
read once, their completions on top: what DPO and KTO share), then the entry points ``sft``,
``reward``, ``dpo``, ``kto``, ``ppo`` (with ``rollout``), and ``compare`` (head-to-head).

The Django side (``sampler.runs``) feeds records in and records the run.
"""
