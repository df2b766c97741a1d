from django import forms
from django.contrib.auth import get_user_model

from ranking.exports.filters import FLAG_NAMES, ExportFilters
from ranking.models import DatasetExport
from sampler.registry.models import ModelVersion
from sampler.registry.selectors import policy_versions, reward_versions
from sampler.runs.models import TrainingRun
from sampler.training.config import RewardConfig, SFTConfig
from sampler.training.ppo_config import PPOConfig

# Uploads beyond this are better copied to the server and trained with `manage.py train_*`.
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
# Export formats each kind of run can read.
READABLE_FORMATS = {
    TrainingRun.Kind.SFT: {DatasetExport.Format.DEMONSTRATIONS},
    TrainingRun.Kind.REWARD: {DatasetExport.Format.RANKINGS, DatasetExport.Format.PAIRS},
}
BOTH, REWARD = {"sft", "reward"}, {"reward"}
# name: (field class, minimum, maximum, the kinds of run it applies to)
HYPERPARAMETERS = {
    "learning_rate": (forms.FloatField, 1e-8, 1.0, BOTH),
    "epochs": (forms.FloatField, 0.01, 100, BOTH),
    "max_steps": (forms.IntegerField, 1, None, BOTH),
    "batch_size": (forms.IntegerField, 1, 4096, BOTH),
    "gradient_accumulation_steps": (forms.IntegerField, 1, 1024, BOTH),
    "max_length": (forms.IntegerField, 8, 131072, BOTH),
    "eval_every": (forms.IntegerField, 0, None, BOTH),
    "checkpoint_every": (forms.IntegerField, 0, None, BOTH),
    "seed": (forms.IntegerField, 0, 2**31 - 1, BOTH),
    "margin_per_rank": (forms.FloatField, 0, None, REWARD),
    "center_rewards_coefficient": (forms.FloatField, 0, None, REWARD),
}


def _defaults(name: str) -> str:
    """The placeholder: the reward default, and the SFT one where it differs."""
    reward, sft = getattr(RewardConfig, name), getattr(SFTConfig, name, None)
    shown = "" if reward is None else str(reward)
    return shown if sft in (None, reward) else f"{shown} (SFT {sft})"


class TrainingRunForm(forms.Form):
    """Launch a run: what to train, from which model, on which data, with which settings.

    Empty hyperparameters take the defaults of the run's config (shown as placeholders).
    """

    kind = forms.ChoiceField(
        choices=[(TrainingRun.Kind.REWARD, "Reward model"), (TrainingRun.Kind.SFT, "SFT policy")]
    )
    base_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY),
        required=False,
        empty_label="The active policy",
    )
    output_name = forms.CharField(max_length=200, required=False, help_text="Empty: automatic.")
    source = forms.ChoiceField(
        choices=[
            ("database", "The database, with these filters"),
            ("export", "A finished export"),
            ("upload", "An uploaded JSONL file"),
        ],
        initial="database",
        widget=forms.RadioSelect,
    )
    export = forms.ModelChoiceField(
        queryset=DatasetExport.objects.filter(status=DatasetExport.Status.SUCCEEDED).order_by(
            "-created_at"
        ),
        required=False,
    )
    upload = forms.FileField(required=False, help_text=".jsonl or .jsonl.gz, as exported.")
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    model_versions = forms.ModelMultipleChoiceField(
        queryset=ModelVersion.objects.filter(kind=ModelVersion.Kind.POLICY), required=False
    )
    min_agreement = forms.FloatField(required=False, min_value=0, max_value=1)
    exclude_flags = forms.MultipleChoiceField(
        choices=[(name, name.replace("_", " ")) for name in FLAG_NAMES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    exclude_trainers = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.order_by("username"), required=False
    )
    test_fraction = forms.FloatField(
        min_value=0, max_value=0.9, initial=0.1, help_text="Held out, by conversation."
    )
    split_seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (field_class, minimum, maximum, _) in HYPERPARAMETERS.items():
            field = field_class(min_value=minimum, max_value=maximum, required=False)
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
            for name, (*_, kinds) in HYPERPARAMETERS.items()
            if kind in kinds and data.get(name) is not None
        }
        data["config"]["test_fraction"] = data["test_fraction"]
        source = data["source"]
        if source == "export":
            export = data.get("export")
            if export is None:
                raise forms.ValidationError({"export": "Choose an export."})
            if export.format not in READABLE_FORMATS[kind]:
                raise forms.ValidationError(
                    {"export": f"A {kind} run cannot read a {export.get_format_display()} export."}
                )
        elif source == "upload":
            upload = data.get("upload")
            if upload is None:
                raise forms.ValidationError({"upload": "Choose a file."})
            if upload.size > MAX_UPLOAD_BYTES:
                raise forms.ValidationError({"upload": "The file is too large for an upload."})
            if not upload.name.endswith((".jsonl", ".jsonl.gz", ".json")):
                raise forms.ValidationError({"upload": "Upload a .jsonl or .jsonl.gz file."})
        else:
            try:
                data["filters"] = ExportFilters(
                    date_from=data.get("date_from"),
                    date_to=data.get("date_to"),
                    model_version_ids=tuple(v.pk for v in data.get("model_versions") or ()),
                    min_agreement=data.get("min_agreement"),
                    exclude_flags=tuple(data.get("exclude_flags") or ()),
                    exclude_trainer_ids=tuple(u.pk for u in data.get("exclude_trainers") or ()),
                    test_fraction=data["test_fraction"],
                    split_seed=data["split_seed"],
                )
            except forms.ValidationError as error:
                raise forms.ValidationError(error.messages) from error
        return data


# ---- PPO (launched from the Models page) ----


class PPORunForm(forms.Form):
    """Launch PPO from the Models page: prompts from the database (held-out share by
    conversation), the most used settings; the rest keep PPOConfig's defaults."""

    base_version = forms.ModelChoiceField(
        queryset=policy_versions(), required=False, empty_label="The active policy"
    )
    reward_version = forms.ModelChoiceField(
        queryset=reward_versions(), required=False, empty_label="The active reward model"
    )
    output_name = forms.CharField(max_length=200, required=False)
    max_steps = forms.IntegerField(min_value=1, max_value=1_000_000, initial=100)
    batch_size = forms.IntegerField(min_value=1, max_value=4096, initial=PPOConfig.batch_size)
    learning_rate = forms.FloatField(min_value=1e-9, max_value=1.0, initial=PPOConfig.learning_rate)
    kl_coef = forms.FloatField(min_value=0.0, max_value=10.0, initial=PPOConfig.kl_coef)
    max_kl = forms.FloatField(min_value=0.0, initial=PPOConfig.max_kl)
    max_new_tokens = forms.IntegerField(
        min_value=1, max_value=4096, initial=PPOConfig.max_new_tokens
    )
    test_fraction = forms.FloatField(min_value=0.0, max_value=0.9, initial=0.1)

    CONFIG_FIELDS = ("max_steps", "batch_size", "learning_rate", "kl_coef", "max_kl")

    def config(self) -> dict:
        data = self.cleaned_data
        values = {name: data[name] for name in self.CONFIG_FIELDS}
        values["max_new_tokens"] = data["max_new_tokens"]
        values["test_fraction"] = data["test_fraction"]
        return values
