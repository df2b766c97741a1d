import gzip
import zlib
from dataclasses import replace

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from config.forms import CheckboxField, ModelChoiceField
from ranking.exports.filter_form import ExportFilterForm
from ranking.exports.filters import (
    MAX_SPLIT_SEED,
    SPLIT_SEED,
    SPLIT_SEED_BOUNDS,
    ExportFilters,
)
from ranking.exports.models import DatasetExport
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import policy_versions, reward_versions
from sampler.runs.models import TrainingRun, run_of_kind
from sampler.runs.sources import REWARD_SOURCES
from sampler.training.config import (
    DATA_HALVES,
    DPO_LOSSES,
    DPO_MODES,
    KTO_SOURCES,
    ORIGINS,
    SETTINGS,
    Bound,
    DPOConfig,
    KTOConfig,
    RewardConfig,
    SFTConfig,
    number_text,
)
from sampler.training.ppo_config import PPOConfig
from sampler.training.records import json_line

# Export formats each kind of run can read.
READABLE_FORMATS = {
    TrainingRun.Kind.SFT: {DatasetExport.Format.DEMONSTRATIONS},
    TrainingRun.Kind.REWARD: {DatasetExport.Format.RANKINGS, DatasetExport.Format.PAIRS},
    TrainingRun.Kind.DPO: {DatasetExport.Format.RANKINGS, DatasetExport.Format.PAIRS},
    # No export writes KTO records: KTO reads the database or an uploaded file.
    TrainingRun.Kind.KTO: set(),
}
# The endings an uploaded data file's name may have, in any letter case: each is read as JSON
# lines, gzipped or not (by its first bytes); the upload's help and its refusal list them.
UPLOAD_SUFFIXES = (".jsonl", ".jsonl.gz", ".json")
UPLOAD_ENDINGS = f"{', '.join(UPLOAD_SUFFIXES[:-1])} or {UPLOAD_SUFFIXES[-1]}"
# What a file that carries its own split is told about the held-out fraction asked of it.
KEEP_SPLIT = "choose it when you export, and leave this field empty."

CONFIG_CLASSES = {"sft": SFTConfig, "reward": RewardConfig, "dpo": DPOConfig, "kto": KTOConfig}
ALL, REWARD = set(CONFIG_CLASSES), {"reward"}
POLICY_PREFERENCE = {"dpo", "kto"}
# name: (field class, the kinds of run it applies to). Each takes its range from those kinds'
# configs (``BOUNDS``), which give it one range.
HYPERPARAMETERS = {
    "learning_rate": (forms.FloatField, ALL),
    "epochs": (forms.FloatField, ALL),
    "max_steps": (forms.IntegerField, ALL),
    "batch_size": (forms.IntegerField, ALL),
    "gradient_accumulation_steps": (forms.IntegerField, ALL),
    "max_length": (forms.IntegerField, ALL),
    "eval_every": (forms.IntegerField, ALL),
    "checkpoint_every": (forms.IntegerField, ALL),
    "seed": (forms.IntegerField, ALL),
    "margin_per_rank": (forms.FloatField, REWARD),
    "center_rewards_coefficient": (forms.FloatField, REWARD),
    "tie_weight": (forms.FloatField, REWARD),
    "beta": (forms.FloatField, POLICY_PREFERENCE),
    "label_smoothing": (forms.FloatField, {"dpo"}),
    "lora_r": (forms.IntegerField, ALL),
    "lora_alpha": (forms.FloatField, ALL),
}


def _bound(name: str, kinds: set[str]) -> Bound:
    """The range of the setting ``name`` in the configs of ``kinds``: one field sets it for
    each of them, so they must agree."""
    (bound,) = {CONFIG_CLASSES[kind].BOUNDS[name] for kind in kinds}
    return bound


def _output_name_field() -> forms.CharField:
    """The new version's name, as both training forms ask for it."""
    return forms.CharField(
        max_length=200, required=False, label="New version's name", help_text="Empty: automatic."
    )


def _setting(name: str) -> dict:
    """The label and help of the setting ``name``, as every door names it (``SETTINGS``)."""
    label, help_text = SETTINGS[name]
    return {"label": label, "help_text": help_text}


def _bounded(field_class, name: str, bound: Bound, **kwargs) -> forms.Field:
    """A field of the setting ``name`` taking what ``bound`` takes, labelled as ``_setting``;
    out of range it says the range as the train_* commands say a setting's
    (``Bound.refusal``: "Batch size must be between 1 and 4096."), in place of Django's
    "Ensure this value ..."."""
    refusal = bound.refusal(name)

    def open_ends(value) -> None:
        # Django's min_value and max_value take their ends; an end the range leaves out is
        # refused here (past the ends, they refuse: the sentence is said once).
        if value is not None and (
            (bound.above and value == bound.low) or (bound.below and value == bound.high)
        ):
            raise forms.ValidationError(refusal, code="out_of_range")

    return field_class(
        min_value=bound.low,
        max_value=bound.high,
        error_messages={"min_value": refusal, "max_value": refusal},
        validators=[open_ends],
        **_setting(name),
        **kwargs,
    )


def _defaults(name: str) -> str:
    """The placeholder: each kind's default where they differ ("sft 0.0001, reward/dpo/kto
    0.00002"), its numbers as the refusals write them (``number_text``)."""
    values: dict[str, list[str]] = {}
    for kind, config_class in CONFIG_CLASSES.items():
        if hasattr(config_class, name):
            value = getattr(config_class, name)
            shown = "" if value is None else number_text(value, grouped=False)
            values.setdefault(shown, []).append(kind)
    if len(values) == 1:
        return next(iter(values))
    return ", ".join(f"{'/'.join(kinds)} {value}" for value, kinds in values.items())


def _first_record(upload) -> dict:
    """The first JSON line of an uploaded JSONL file, plain or gzipped ({} when it has none
    that reads: the run's own checks say what is wrong with it)."""
    try:
        head = upload.read(2)
        upload.seek(0)
        stream = gzip.GzipFile(fileobj=upload) if head == b"\x1f\x8b" else upload
        record = json_line(stream.readline(1 << 20))
    except (OSError, EOFError, zlib.error, ValueError):  # ValueError: NotJSON among them
        record = None
    finally:
        upload.seek(0)
    return record if isinstance(record, dict) else {}


class TrainingRunForm(ExportFilterForm):
    """Launch a run: what to train, from which model, on which data, with which settings.

    Empty hyperparameters take the defaults of the run's config (shown as placeholders).
    """

    kind = forms.ChoiceField(
        choices=[
            (TrainingRun.Kind.REWARD, "Reward model"),
            (TrainingRun.Kind.SFT, "SFT policy"),
            (TrainingRun.Kind.DPO, "DPO policy (from rankings)"),
            (TrainingRun.Kind.KTO, "KTO policy (from thumbs and flags)"),
        ],
        label="Train",
        help_text="What the run makes: a reward model, or a policy by SFT, DPO or KTO.",
    )
    dpo_mode = forms.ChoiceField(
        choices=[(mode, mode) for mode in DPO_MODES],
        initial=DPOConfig.mode,
        required=False,
        **_setting("mode"),
    )
    dpo_loss = forms.ChoiceField(
        choices=[(loss, loss) for loss in DPO_LOSSES],
        initial=DPOConfig.loss_type,
        required=False,
        **_setting("loss_type"),
    )
    kto_sources = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in KTO_SOURCES],
        initial=list(KTO_SOURCES),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        **_setting("sources"),
    )
    reward_sources = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in REWARD_SOURCES],
        initial=["rankings"],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Reward model learns from (database)",
        help_text="Rankings; red-team pairs (a correction over the failed reply); feedback "
        "pairs (a liked reply over a disliked or reported one).",
    )
    origins = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in ORIGINS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        **_setting("origins"),
    )
    # Ticked by default; posts "on", as the box did when it was drawn without a value.
    normalize_to_demonstrations = CheckboxField(
        value="on", initial=True, **_setting("normalize_to_demonstrations")
    )
    # A judge independent of a PPO policy's reward model trains on the other half.
    data_half = forms.ChoiceField(
        choices=[
            (half, "every conversation" if half == "all" else f"the {half} half")
            for half in DATA_HALVES
        ],
        initial=RewardConfig.data_half,
        required=False,
        **_setting("data_half"),
    )
    demonstrations_export = ModelChoiceField(
        queryset=DatasetExport.objects.filter(
            status=DatasetExport.Status.SUCCEEDED, format=DatasetExport.Format.DEMONSTRATIONS
        ).order_by("-created_at"),
        required=False,
        label="Demonstrations to normalise a file-trained reward model on",
        help_text="A demonstrations export; a reward model from the database normalises on "
        "the database's.",
    )
    base_version = ModelChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY),
        required=False,
        empty_label="The active policy",
        label="Start from",
        help_text="The policy the run starts from (DPO and KTO: also their reference).",
    )
    output_name = _output_name_field()
    source = forms.ChoiceField(
        choices=[
            ("database", "The database, with these filters"),
            ("export", "A finished export"),
            ("upload", "An uploaded JSONL file"),
        ],
        initial="database",
        widget=forms.RadioSelect,
        label="Data",
        help_text="Where the run's records come from.",
    )
    export = ModelChoiceField(
        queryset=DatasetExport.objects.filter(status=DatasetExport.Status.SUCCEEDED).order_by(
            "-created_at"
        ),
        required=False,
        label="Export",
        help_text="A finished export of a format the kind reads.",
    )
    upload = forms.FileField(
        required=False,
        label="Upload",
        help_text=f"{UPLOAD_ENDINGS}: one JSON record per line, as exported.",
    )
    # Left empty, a file that carries its own split (an export's) keeps it; other data needs one.
    test_fraction = _bounded(
        forms.FloatField,
        "test_fraction",
        _bound("test_fraction", ALL),
        initial=0.1,
        required=False,
    )
    split_seed = forms.IntegerField(
        min_value=0,
        max_value=MAX_SPLIT_SEED,
        initial=0,
        error_messages=SPLIT_SEED_BOUNDS,
        label=SPLIT_SEED,
        help_text="Chooses which conversations are held out.",
    )

    def __init__(self, *args, upload_too_large: bool = False, **kwargs):
        """``upload_too_large``: the upload passed the size limit while it streamed in, and
        was dropped (``config.uploads``)."""
        super().__init__(*args, **kwargs)
        self.upload_too_large = upload_too_large
        for name, (field_class, kinds) in HYPERPARAMETERS.items():
            field = _bounded(field_class, name, _bound(name, kinds), required=False)
            field.widget.attrs.update({"placeholder": _defaults(name), "step": "any"})
            self.fields[name] = field

    def hyperparameter_fields(self):
        return [self[name] for name in HYPERPARAMETERS]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        kind = data["kind"]
        data["config"] = {
            name: data[name]
            for name, (_, kinds) in HYPERPARAMETERS.items()
            if kind in kinds and data.get(name) is not None
        }
        if data["test_fraction"] is not None:
            data["config"]["test_fraction"] = data["test_fraction"]
        if kind == "dpo":
            data["config"].update(
                mode=data["dpo_mode"] or DPOConfig.mode,
                loss_type=data["dpo_loss"] or DPOConfig.loss_type,
            )
        if kind == "kto" and data["source"] == "database":  # a file is read whole
            if not data["kto_sources"]:
                raise forms.ValidationError({"kto_sources": "Tick at least one source."})
            data["config"]["sources"] = ",".join(data["kto_sources"])
        if kind == "sft" and data["origins"]:
            data["config"]["origins"] = ",".join(data["origins"])
        data["kind_inputs"] = {}
        if kind == "reward":
            data["config"]["normalize_to_demonstrations"] = data["normalize_to_demonstrations"]
            data["config"]["data_half"] = data["data_half"] or RewardConfig.data_half
            export = data.get("demonstrations_export")
            if export is not None:
                data["kind_inputs"]["demonstrations_path"] = export.file_path
            if data["source"] == "database" and data["reward_sources"]:
                data["kind_inputs"]["reward_sources"] = tuple(data["reward_sources"])
        source = data["source"]
        if source != "database":
            # What would be ignored is refused, as the train_* commands refuse it with --data.
            chosen = {key for key, value in self.filter_values(data).items() if value}
            if chosen:
                raise forms.ValidationError(
                    f"The database filters ({', '.join(sorted(chosen))}) choose rows of the "
                    "database; a file is read whole."
                )
            if source == "export" and self._test_fraction_chosen(data):
                raise forms.ValidationError(
                    {"test_fraction": f"An export's records carry their own split; {KEEP_SPLIT}"}
                )
        if source == "export":
            export = data.get("export")
            if export is None:
                raise forms.ValidationError({"export": "Choose an export."})
            if export.format not in READABLE_FORMATS[kind]:
                raise forms.ValidationError(
                    {
                        "export": f"{run_of_kind(kind)} cannot read a "
                        f"{export.get_format_display()} export."
                    }
                )
        elif source == "upload":
            upload = data.get("upload")
            limit = settings.TRAINING_UPLOAD_MAX_BYTES
            if self.upload_too_large or (upload is not None and upload.size > limit):
                raise forms.ValidationError(
                    {
                        "upload": f"The file is larger than {filesizeformat(limit)}, the most an "
                        "upload may hold: copy it to the server and train with manage.py "
                        "train_*."
                    }
                )
            if upload is None:
                raise forms.ValidationError({"upload": "Choose a file."})
            if not upload.name.lower().endswith(UPLOAD_SUFFIXES):
                raise forms.ValidationError({"upload": f"Upload a {UPLOAD_ENDINGS} file."})
            carries_split = "split" in _first_record(upload)
            if carries_split and self._test_fraction_chosen(data):
                raise forms.ValidationError(
                    {
                        "test_fraction": f"The records of {upload.name} carry their own split "
                        f"(an export's), which training keeps; {KEEP_SPLIT}"
                    }
                )
            if not carries_split:
                self._require_test_fraction(data)
        else:
            self._require_test_fraction(data)
            try:
                data["filters"] = ExportFilters(
                    **self.filter_values(data),
                    test_fraction=data["test_fraction"],
                    split_seed=data["split_seed"],
                )
            except forms.ValidationError as error:
                raise forms.ValidationError(error.messages) from error
        return data

    def _test_fraction_chosen(self, data: dict) -> bool:
        """Whether a fraction other than the page's default was asked for."""
        return data["test_fraction"] not in {None, self.fields["test_fraction"].initial}

    def _require_test_fraction(self, data: dict) -> None:
        """Data without a split of its own needs the fraction to hold out."""
        if data["test_fraction"] is None:
            message = self.fields["test_fraction"].error_messages["required"]
            raise forms.ValidationError({"test_fraction": message})


# ---- PPO (launched from the Models page) ----


def _ppo_setting(field_class, name: str, bound: Bound | None = None, **kwargs) -> forms.Field:
    """The PPO form's field of the setting ``name``: PPOConfig's range (or ``bound``) and, unless
    given, its default (a float's written as ``number_text`` writes it: "0.00001", not
    "1e-05")."""
    default = getattr(PPOConfig, name)
    if isinstance(default, float):
        default = number_text(default, grouped=False)
    kwargs.setdefault("initial", default)
    return _bounded(field_class, name, bound or PPOConfig.BOUNDS[name], **kwargs)


class PPORunForm(forms.Form):
    """Launch PPO from the Models page: prompts from the database (held-out share by
    conversation), the most used settings; the rest keep PPOConfig's defaults."""

    base_version = ModelChoiceField(
        queryset=policy_versions(),
        required=False,
        empty_label="The active policy",
        label="Start from (and stay near)",
        help_text="The policy PPO optimises, and the reference its KL penalty keeps it near.",
    )
    reward_version = ModelChoiceField(
        queryset=reward_versions(),
        required=False,
        empty_label="The active reward model",
        label="Reward model",
        help_text="The reward model the policy is optimised against.",
    )
    output_name = _output_name_field()
    max_steps = _ppo_setting(forms.IntegerField, "max_steps", initial=100)
    # Each batch is split into PPOConfig's minibatches, which this form keeps: a smaller batch
    # would leave a minibatch without a reply.
    batch_size = _ppo_setting(
        forms.IntegerField,
        "batch_size",
        bound=replace(PPOConfig.BOUNDS["batch_size"], low=PPOConfig.minibatches),
    )
    learning_rate = _ppo_setting(forms.FloatField, "learning_rate")
    kl_coef = _ppo_setting(forms.FloatField, "kl_coef")
    max_kl = _ppo_setting(forms.FloatField, "max_kl")
    max_new_tokens = _ppo_setting(forms.IntegerField, "max_new_tokens")
    test_fraction = _ppo_setting(forms.FloatField, "test_fraction", initial=0.1)
    lora_r = _ppo_setting(forms.IntegerField, "lora_r")
    lora_alpha = _ppo_setting(forms.FloatField, "lora_alpha")
    lora_targets = forms.CharField(max_length=500, required=False, **_setting("lora_targets"))

    CONFIG_FIELDS = (
        "max_steps",
        "batch_size",
        "learning_rate",
        "kl_coef",
        "max_kl",
        "lora_r",
        "lora_alpha",
        "lora_targets",
    )

    def config(self) -> dict:
        data = self.cleaned_data
        values = {name: data[name] for name in self.CONFIG_FIELDS}
        values["max_new_tokens"] = data["max_new_tokens"]
        values["test_fraction"] = data["test_fraction"]
        return values
