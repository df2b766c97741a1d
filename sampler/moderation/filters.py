"""The content filter: every generated sample is scored before a trainer sees it.

A filter has a ``name``, a ``version`` (changes whenever what it flags can change) and
``score(texts) -> list[FilterResult]``, one result per text, in order. Two ship here:

- ``BuiltinFilter``: word / phrase lists (case-insensitive, whole words) and regexes, by
  category, from settings; needs no download. A regex that matches an empty string is a
  configuration error (an empty match finds nothing, yet would flag), and an empty match the
  check could not foresee never flags.
- ``ClassifierFilter``: any Hugging Face text-classification model directory; a label flags a
  sample when its probability reaches ``CONTENT_FILTER_THRESHOLD``.

``CONTENT_FILTER`` picks one ("builtin", "classifier", "none") or names a class by dotted path.
A filter may also have ``load()``: what it needs before it scores (a classifier's model) loaded
now, raising when it cannot be, so a worker finds a filter that cannot run before it starts
(``sampler.moderation.services.content_filter_ready``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)

# Matched terms kept per result: enough for a reviewer, bounded for long texts.
MAX_MATCHES_KEPT = 20
# Texts a pattern is tried on for an empty match: the empty text, then single characters a
# zero-width pattern (a word boundary, a lookahead) matches beside.
EMPTY_MATCH_PROBES = ("", "a", "0", ".", " ", "\n")
# Classifier input length; longer samples are truncated (their start is what a trainer reads).
MAX_CLASSIFIER_TOKENS = 512


@dataclass(frozen=True)
class FilterResult:
    flagged: bool
    categories: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    details: dict = field(default_factory=dict)


class ContentFilter(Protocol):
    name: str
    version: str

    def score(self, texts: Sequence[str]) -> list[FilterResult]: ...


def _fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:12]


def _by_category(
    value: dict | list | tuple, *, default_category: str, setting: str
) -> dict[str, list[str]]:
    """``value`` as category -> terms; ImproperlyConfigured (naming ``setting``) for a term that
    is blank or not a string, or a string where a list of terms belongs: a blank term matches
    the empty string, and a string would be read letter by letter, so either would flag
    nearly every sample."""
    if isinstance(value, dict):
        by_category = dict(value.items())
    elif isinstance(value, list | tuple):
        by_category = {default_category: value} if value else {}
    else:
        by_category = {default_category: value}
    for category, items in by_category.items():
        if not isinstance(items, list | tuple) or not all(
            isinstance(item, str) and item.strip() for item in items
        ):
            raise ImproperlyConfigured(
                f"{setting}: {category!r} must be a list of non-blank strings; got {items!r}."
            )
    return {str(category): list(items) for category, items in by_category.items()}


def _compiled_pattern(expression: str, category: str) -> re.Pattern:
    """``expression`` compiled; ImproperlyConfigured when it is no regex, or when it matches an
    empty string (in the empty text, or beside one of ``EMPTY_MATCH_PROBES``): an empty match
    would flag a sample with nothing found in it, and "a*" or "x|" would flag every sample."""
    try:
        pattern = re.compile(expression, re.IGNORECASE)
    except re.error as error:
        raise ImproperlyConfigured(
            f"CONTENT_FILTER_PATTERNS: {expression!r} is not a regex ({error})."
        ) from error
    for probe in EMPTY_MATCH_PROBES:
        if any(match.group(0) == "" for match in pattern.finditer(probe)):
            where = f"an empty string in {probe!r}" if probe else "the empty string"
            raise ImproperlyConfigured(
                f"CONTENT_FILTER_PATTERNS: {expression!r} ({category!r}) matches {where}, so it "
                "would flag samples with nothing found in them (a pattern such as 'a*' or 'x|' "
                "flags every sample). Make it match at least one character ('a+', not 'a*')."
            )
    return pattern


class BuiltinFilter:
    """Word lists and regexes by category. A sample is flagged when anything matches."""

    name = "builtin"

    def __init__(self, *, words: dict | list, patterns: dict | list) -> None:
        self.words = _by_category(
            words, default_category="blocklist", setting="CONTENT_FILTER_WORDS"
        )
        self.patterns = _by_category(
            patterns, default_category="pattern", setting="CONTENT_FILTER_PATTERNS"
        )
        # The number changes with what a configuration flags (2: an empty match never flags),
        # so verdicts stored by an earlier one are not taken for this one's.
        self.version = "2-" + _fingerprint({"words": self.words, "patterns": self.patterns})
        self._compiled: list[tuple[str, re.Pattern]] = []
        for category, terms in self.words.items():
            if terms:
                # Lookarounds rather than \b: a term may start or end with a non-word character.
                alternatives = "|".join(
                    r"\s+".join(re.escape(part) for part in term.split()) for term in terms
                )
                self._compiled.append(
                    (category, re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE))
                )
        for category, expressions in self.patterns.items():
            for expression in expressions:
                self._compiled.append((category, _compiled_pattern(expression, category)))

    def score(self, texts: Sequence[str]) -> list[FilterResult]:
        results = []
        for text in texts:
            matches: dict[str, list[str]] = {}
            for category, pattern in self._compiled:
                # An empty match finds nothing: a pattern that matches an empty string only in
                # contexts the configuration check did not probe ("(?<=@)\w*" beside "@ ")
                # must not flag for it.
                found = [match.group(0) for match in pattern.finditer(text) if match.group(0)]
                if found:
                    matches.setdefault(category, []).extend(found[:MAX_MATCHES_KEPT])
            categories = sorted(matches)
            results.append(
                FilterResult(
                    flagged=bool(categories),
                    categories=categories,
                    scores={category: float(len(matches[category])) for category in categories},
                    details={"matches": {c: matches[c][:MAX_MATCHES_KEPT] for c in categories}},
                )
            )
        return results


class _LoadedClassifier:
    def __init__(self, path: str) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from sampler.generation.sampling import pick_device

        self.device, dtype = pick_device(settings.SAMPLER_DEVICE)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, dtype=dtype)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.model.to(self.device).eval()
        config = self.model.config
        self.labels = [config.id2label[index] for index in range(config.num_labels)]
        # Independent labels (and a lone score) are sigmoids; exclusive labels a softmax.
        self.multi_label = (
            config.problem_type == "multi_label_classification" or config.num_labels == 1
        )
        self.torch = torch

    def probabilities(self, texts: list[str]) -> list[dict[str, float]]:
        torch = self.torch
        limit = min(self.tokenizer.model_max_length or MAX_CLASSIFIER_TOKENS, MAX_CLASSIFIER_TOKENS)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            logits = self.model(**batch).logits.float()
        probabilities = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        return [
            {label: float(value) for label, value in zip(self.labels, row, strict=True)}
            for row in probabilities.tolist()
        ]


_classifiers: dict[str, _LoadedClassifier] = {}
_classifiers_lock = threading.Lock()


def classifier_load(path: str) -> _LoadedClassifier:
    """The classifier at ``path``, loaded once per process."""
    with _classifiers_lock:
        if path not in _classifiers:
            _classifiers[path] = _LoadedClassifier(path)
        return _classifiers[path]


class ClassifierFilter:
    """Any text-classification model directory; labels at or above the threshold flag."""

    def __init__(
        self,
        *,
        path: str,
        threshold: float,
        safe_labels: Sequence[str] = (),
        flag_labels: Sequence[str] = (),
    ) -> None:
        if not path:
            raise ImproperlyConfigured(
                "CONTENT_FILTER=classifier needs CONTENT_FILTER_MODEL (a model directory)."
            )
        self.path = path
        self.threshold = threshold
        self.safe_labels = {label.lower() for label in safe_labels}
        self.flag_labels = {label.lower() for label in flag_labels}
        self.name = f"classifier:{Path(path).name or path}"
        config_file = Path(path) / "config.json"
        model_config = config_file.read_text() if config_file.is_file() else path
        self.version = _fingerprint(
            {
                "config": model_config,
                "threshold": threshold,
                "safe": sorted(self.safe_labels),
                "flag": sorted(self.flag_labels),
            }
        )

    def load(self) -> None:
        """Load the model now (once per process); raises when its directory does not load."""
        classifier_load(self.path)

    def _flags(self, label: str) -> bool:
        if self.flag_labels:
            return label.lower() in self.flag_labels
        return label.lower() not in self.safe_labels

    def score(self, texts: Sequence[str]) -> list[FilterResult]:
        # An empty text has no tokens to classify; it passes.
        scored = [index for index, text in enumerate(texts) if text.strip()]
        probabilities = (
            classifier_load(self.path).probabilities([texts[i] for i in scored]) if scored else []
        )
        by_index = dict(zip(scored, probabilities, strict=True))
        results = []
        for index in range(len(texts)):
            scores = by_index.get(index, {})
            categories = sorted(
                label
                for label, value in scores.items()
                if self._flags(label) and value >= self.threshold
            )
            results.append(FilterResult(bool(categories), categories, scores))
        return results


def content_filter_configured() -> bool:
    """Whether a filter is configured (``CONTENT_FILTER`` is not "none"), read from the
    settings alone: nothing is loaded, so the web process may ask (it runs no filter)."""
    return settings.CONTENT_FILTER != "none"


def content_filter_identity() -> tuple[str, str] | None:
    """The configured filter's name and version (what its verdicts are stored under); None when
    filtering is off. Builds the filter but loads no model (a classifier loads its own when it
    first scores), so the web process may ask: the verdict it shows is this filter's where it
    has one. A filter the settings cannot build (a setting refused, a dotted path that does not
    import, a class that raises as it is made or has no ``name`` or ``version``) is logged and
    taken as none here (the pages then show each text's newest verdict; an error is logged
    once a process, at ERROR, then at DEBUG); the workers that filter still fail on it, saying
    why."""
    try:
        content_filter = content_filter_get()
        return None if content_filter is None else (content_filter.name, content_filter.version)
    except Exception as error:  # whatever a filter class raises: pages are not the place
        # Once a process and error: every page asks, and one report says it.
        said = f"{type(error).__name__}: {error}"
        with _unbuildable_lock:
            first = said not in _unbuildable_said
            _unbuildable_said.add(said)
        log.log(
            logging.ERROR if first else logging.DEBUG,
            "The content filter cannot be built, so no verdict is preferred: %s",
            error,
            exc_info=first and not isinstance(error, ImproperlyConfigured | ImportError),
        )
        return None


# The errors content_filter_identity has logged in this process.
_unbuildable_said: set[str] = set()
_unbuildable_lock = threading.Lock()


def content_filter_get() -> ContentFilter | None:
    """The configured filter; None when filtering is off (``CONTENT_FILTER=none``)."""
    choice = settings.CONTENT_FILTER
    if choice == "none":
        return None
    if choice == "builtin":
        return BuiltinFilter(
            words=settings.CONTENT_FILTER_WORDS, patterns=settings.CONTENT_FILTER_PATTERNS
        )
    if choice == "classifier":
        return ClassifierFilter(
            path=settings.CONTENT_FILTER_MODEL,
            threshold=settings.CONTENT_FILTER_THRESHOLD,
            safe_labels=settings.CONTENT_FILTER_SAFE_LABELS,
            flag_labels=settings.CONTENT_FILTER_FLAG_LABELS,
        )
    if "." in choice:
        return import_string(choice)()
    raise ImproperlyConfigured(
        f"CONTENT_FILTER must be builtin, classifier, none or a dotted class path; got {choice!r}."
    )
