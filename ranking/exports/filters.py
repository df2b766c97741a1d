from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import asdict, dataclass, fields
from datetime import date

from django.conf import settings
from django.core.exceptions import ValidationError

from config.querysets import local_day_bounds
from config.refusals import DATES_OUT_OF_ORDER
from ranking.exports.models import DatasetExport

# 2: rankings carry the ranker's trust_weight, the task's consensus and the project; pairs
# their trust_weight and project, and the rank distance between the two replies is
# `rank_distance` (schema 1 called it `margin`, a name TRL's RewardTrainer reads as a loss margin).
SCHEMA_VERSION = 2


FORMATS = tuple(DatasetExport.Format.values)


PAIR_MODES = ("per_ranker", "aggregated")
# What a KTO training run reads (prompt, completion, label): built from feedback and flags by
# the runs, not an export format; its filters are checked here all the same.
KTO_FORMAT = "kto"


SPLITS = ("all", "train", "test")


# Red-team data (corrected attacks): kept with the rest, left out, or exported alone.
RED_TEAM_MODES = ("include", "exclude", "only")


FLAG_NAMES = ("harmful", "untruthful", "unhelpful", "off_topic", "other")


CHUNK_SIZE = 500


# The same bounds wherever a split is chosen (command line, API, pages).
MAX_TEST_FRACTION = 0.99
# What every page, command and API refusal calls ``test_fraction`` (the field keeps its name):
# the training configs' label for it is the same (``sampler.training.config.SETTINGS``).
HELD_OUT_FRACTION = "Held-out fraction"
# What they call ``min_agreement``: a share of rankers, from 0 to 1.
MIN_AGREEMENT = "Minimum agreement"


def bounds_refused(sentence: str) -> dict[str, str]:
    """The error messages of a form or serializer field bounded by ``min_value`` and
    ``max_value`` (both name their bounds' errors so) that say ``sentence`` out of range, in
    place of the stock "Ensure this value ..."."""
    return {"min_value": sentence, "max_value": sentence}


# Their refusals out of range, in these words from the API, the Exports page and
# export_comparisons alike (the fields bounded by them take the ``*_BOUNDS``).
TEST_FRACTION_OUT_OF_RANGE = f"{HELD_OUT_FRACTION} must be between 0 and {MAX_TEST_FRACTION}."
TEST_FRACTION_BOUNDS = bounds_refused(TEST_FRACTION_OUT_OF_RANGE)
MIN_AGREEMENT_OUT_OF_RANGE = f"{MIN_AGREEMENT} must be between 0 and 1."
MIN_AGREEMENT_BOUNDS = bounds_refused(MIN_AGREEMENT_OUT_OF_RANGE)
MAX_SPLIT_SEED = 2**32 - 1
SPLIT_SEED = "Split seed"
SPLIT_SEED_OUT_OF_RANGE = f"{SPLIT_SEED} must be between 0 and {MAX_SPLIT_SEED:,}."
SPLIT_SEED_BOUNDS = bounds_refused(SPLIT_SEED_OUT_OF_RANGE)
# The test split of a held-out fraction of 0, in the words a comparison or training run holding
# out no prompt is refused in (``sampler.runs.data.split_problem``): empty whatever the data.
NOTHING_HELD_OUT = (
    "No held-out conversation to export: a held-out fraction of 0 holds out none, so the test "
    "split is empty. Choose a larger held-out fraction, or the train or all split."
)


@dataclass(frozen=True)
class ExportFilters:
    """What to export. Every field has a default, so ``ExportFilters()`` exports everything."""

    date_from: date | None = None
    date_to: date | None = None
    model_version_ids: tuple[int, ...] = ()
    # Rankings / per-ranker pairs: the task's mean pairwise agreement between rankers.
    # Aggregated pairs: the share of rankers that agree with the majority on that pair.
    min_agreement: float | None = None
    exclude_flags: tuple[str, ...] = ()
    exclude_trainer_ids: tuple[int, ...] = ()
    pair_mode: str = "per_ranker"
    split: str = "all"
    # Conversations hashed into the test split; by conversation, so no prompt is on both sides.
    test_fraction: float = 0.1
    split_seed: int = 0
    pseudonymize: bool = True
    red_team: str = "include"
    # Guideline version numbers; empty: any (rows made before versions existed included).
    guideline_versions: tuple[int, ...] = ()
    # Project ids; empty: every project (asked for by naming none).
    project_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        errors = {}
        if self.red_team not in RED_TEAM_MODES:
            errors["red_team"] = f"red_team must be one of {', '.join(RED_TEAM_MODES)}."
        if any(number < 1 for number in self.guideline_versions):
            errors["guideline_versions"] = "Guideline versions are numbered from 1."
        if self.pair_mode not in PAIR_MODES:
            errors["pair_mode"] = f"pair_mode must be one of {', '.join(PAIR_MODES)}."
        if self.split not in SPLITS:
            errors["split"] = f"split must be one of {', '.join(SPLITS)}."
        if not 0.0 <= self.test_fraction <= MAX_TEST_FRACTION:
            errors["test_fraction"] = TEST_FRACTION_OUT_OF_RANGE
        if not 0 <= self.split_seed <= MAX_SPLIT_SEED:
            errors["split_seed"] = SPLIT_SEED_OUT_OF_RANGE
        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            errors["min_agreement"] = MIN_AGREEMENT_OUT_OF_RANGE
        unknown = set(self.exclude_flags) - set(FLAG_NAMES)
        if unknown:
            errors["exclude_flags"] = f"Unknown flags: {', '.join(sorted(unknown))}."
        if self.date_from and self.date_to and self.date_from > self.date_to:
            errors["date_to"] = DATES_OUT_OF_ORDER
        if errors:
            raise ValidationError(errors)

    def check_format(self, format: str, *, names: dict[str, str] | None = None) -> None:
        """Refuse filters that would be ignored: those choosing rankings, set for an export of
        demonstrations (which come from conversations, not rankings), and ``exclude_flags`` for
        KTO's examples (its flagged replies are examples, undesirable ones); and what is empty
        whatever the data: red-team data only for rankings, which never are, and the test split
        of a held-out fraction of 0 (``NOTHING_HELD_OUT``).

        ``names``: what the caller calls a filter (the streaming API's query parameters), for
        the error's key and message; a filter not named there goes by its field's name."""
        ignored = {
            DatasetExport.Format.DEMONSTRATIONS: (
                ("model_version_ids", "min_agreement", "exclude_flags"),
                "chooses rankings or pairs; demonstrations are not filtered by it.",
            ),
            KTO_FORMAT: (
                ("exclude_flags",),
                "drops flagged rankings; KTO takes flagged replies as undesirable examples "
                "instead (leave `flags` out of its sources to do without them).",
            ),
        }
        ignored_names, why = ignored.get(format, ((), ""))
        defaults = ExportFilters()
        set_names = [
            name for name in ignored_names if getattr(self, name) != getattr(defaults, name)
        ]
        labels = names or {}
        errors = {labels.get(name, name): f"{labels.get(name, name)} {why}" for name in set_names}
        if format == DatasetExport.Format.RANKINGS and self.red_team == "only":
            label = labels.get("red_team", "red_team")
            errors[label] = (
                f'{label} "only": rankings are never red-team data, so the export would be '
                "empty (corrected red-team attacks are exported as pairs and demonstrations)."
            )
        if self.split == "test" and self.test_fraction == 0:
            errors[labels.get("test_fraction", "test_fraction")] = NOTHING_HELD_OUT
        if errors:
            raise ValidationError(errors)

    def as_dict(self) -> dict:
        values = asdict(self)
        for key in ("date_from", "date_to"):
            values[key] = values[key].isoformat() if values[key] else None
        for key in (
            "model_version_ids",
            "exclude_flags",
            "exclude_trainer_ids",
            "guideline_versions",
            "project_ids",
        ):
            values[key] = list(values[key])
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ExportFilters:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValidationError({"filters": f"Unknown filters: {', '.join(sorted(unknown))}."})
        cleaned = dict(values)
        # A date is refused by its own key, so that each door names its option.
        errors = {}
        for key in ("date_from", "date_to"):
            if cleaned.get(key):
                try:
                    cleaned[key] = date.fromisoformat(str(cleaned[key]))
                except ValueError as error:
                    errors[key] = f"{cleaned[key]} is not a date written YYYY-MM-DD ({error})."
        if errors:
            raise ValidationError(errors)
        try:
            for key in (
                "model_version_ids",
                "exclude_trainer_ids",
                "guideline_versions",
                "project_ids",
            ):
                cleaned[key] = tuple(int(v) for v in cleaned.get(key) or ())
            cleaned["exclude_flags"] = tuple(str(v) for v in cleaned.get("exclude_flags") or ())
            for key in ("min_agreement", "test_fraction"):
                if cleaned.get(key) is not None:
                    cleaned[key] = float(cleaned[key])
        except (TypeError, ValueError) as error:
            raise ValidationError({"filters": f"Malformed filter value ({error})."}) from error
        return cls(**cleaned)


# How a stored filter set (``ExportFilters.as_dict()``, and an export's ``compress``) reads on
# a page, in the order of the Exports form: each key's label and what an unset value means.
FILTER_DISPLAY: dict[str, tuple[str, str]] = {
    "pair_mode": ("Pairs", "—"),
    "split": ("Split", "—"),
    "test_fraction": (HELD_OUT_FRACTION, "—"),
    "split_seed": (SPLIT_SEED, "—"),
    "date_from": ("From", "any"),
    "date_to": ("To", "any"),
    "min_agreement": (MIN_AGREEMENT, "none"),
    "model_version_ids": ("Model versions (ids)", "all"),
    "exclude_trainer_ids": ("Exclude trainers (ids)", "none"),
    "exclude_flags": ("Exclude flagged as", "none"),
    "project_ids": ("Projects (ids)", "all"),
    "red_team": ("Red-team data", "—"),
    "guideline_versions": ("Guideline versions", "all"),
    "pseudonymize": ("Pseudonymise trainers", "—"),
    "compress": ("gzip", "—"),
}


def filter_items(values: dict) -> list[tuple[str, str]]:
    """(label, value) for each filter of a stored filter set, as text to show: lists joined,
    yes/no, underscores as spaces; a key not in ``FILTER_DISPLAY`` (a row written by another
    version) by its own name, after the known ones."""
    known = [key for key in FILTER_DISPLAY if key in values]
    others = sorted(key for key in values if key not in FILTER_DISPLAY)
    items = []
    for key in known + others:
        label, unset = FILTER_DISPLAY.get(key, (key.replace("_", " ").capitalize(), "—"))
        items.append((label, value_text(values[key], unset, spaced=True)))
    return items


def value_text(value, unset: str = "—", *, spaced: bool = False) -> str:
    """A stored value as text to show: yes/no, lists joined, ``unset`` when none or empty;
    ``spaced``: underscores as spaces (a filter's choice), else strings as stored."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "" or value == [] or value == ():
        return unset
    if isinstance(value, list | tuple):
        return ", ".join(value_text(item, unset, spaced=spaced) for item in value)
    if isinstance(value, str):
        return value.replace("_", " ") if spaced else value
    return str(value)


def split_of(conversation_id: int, *, seed: int, test_fraction: float) -> str:
    """Deterministic: the same conversation lands on the same side in every export."""
    digest = hashlib.sha256(f"{seed}:{conversation_id}".encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") / 2**64 < test_fraction else "train"


def chosen_split(conversation_id: int, filters: ExportFilters) -> str | None:
    """The conversation's split (``split_of`` under the filters' seed and fraction), or None
    when the filters choose the other one."""
    split = split_of(conversation_id, seed=filters.split_seed, test_fraction=filters.test_fraction)
    if filters.split != "all" and split != filters.split:
        return None
    return split


def pseudonym(user_id: int | None, *, enabled: bool) -> str | int | None:
    """A stable id per user and deployment that does not reveal who ranked.

    Keyed by ``EXPORT_PSEUDONYM_KEY`` (its own secret: rotating ``SECRET_KEY`` keeps it)."""
    if user_id is None or not enabled:
        return user_id
    return _keyed_hash(user_id, settings.EXPORT_PSEUDONYM_KEY)


@functools.lru_cache(maxsize=65536)
def _keyed_hash(user_id: int, key: str) -> str:
    # Cached: an export names the same few hundred trainers on millions of rows.
    mac = hmac.new(key.encode(), f"ranker:{user_id}".encode(), hashlib.sha256)
    return "r-" + mac.hexdigest()[:16]


def day_bounds(filters: ExportFilters) -> dict:
    return local_day_bounds(filters.date_from, filters.date_to)
