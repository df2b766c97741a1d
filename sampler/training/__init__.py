"""SFT and reward-model training: plain torch + transformers + Accelerate, no Django.

Modules, in reading order: ``config`` (what can be set), ``data`` (records -> token tensors),
``model`` (loading, scoring), ``losses`` (pure tensor helpers), ``loop`` (the shared loop,
checkpoints, progress), ``sft`` and ``reward`` (the two entry points).

The Django side (``sampler.training_services``) feeds records in and records the run.
"""
