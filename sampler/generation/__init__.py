"""Generation: jobs (models, services, views) and the backends that sample completions."""

# Merge shim: the old module's names for code outside sampler; the lead removes it after the merge.
_OLD_NAMES = {
    "GenerationParams",
    "filter_logits",
    "load_model",
    "model_cache",
    "penalize_repeats",
    "pick_device",
    "prepare_prompt",
    "sample_completions",
    "sample_rows",
    "sampling_distribution",
}


def __getattr__(name: str):
    import importlib

    if name in _OLD_NAMES:
        return getattr(importlib.import_module("sampler.generation.sampling"), name)
    raise AttributeError(name)
