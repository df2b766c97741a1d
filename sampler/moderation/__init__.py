"""The content filter: every generated sample is scored before a trainer sees it."""

# Merge shim: the old module's names for code outside sampler; the lead removes it after the merge.
_OLD_NAMES = {
    "content_filter_get": "sampler.moderation.filters",
    "samples_moderate": "sampler.moderation.services",
    "samples_flagged_ids": "sampler.moderation.selectors",
    "moderation_latest_by_sample": "sampler.moderation.selectors",
}


def __getattr__(name: str):
    import importlib

    if name in _OLD_NAMES:
        return getattr(importlib.import_module(_OLD_NAMES[name]), name)
    raise AttributeError(name)
