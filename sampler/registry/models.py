from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

from config.text import validate_one_line

# The most tokens a context length column holds (a PostgreSQL integer).
MAX_CONTEXT_LENGTH = 2**31 - 1


class ModelVersion(models.Model):
    """A registered model directory, loadable with stock ``from_pretrained``."""

    class Kind(models.TextChoices):
        POLICY = "policy", "Policy (causal LM)"
        REWARD = "reward", "Reward model"

    class Source(models.TextChoices):
        EMBEDDED = "embedded", "Bundled tiny model"
        CONFIGURED = "configured", "From SAMPLER_MODEL"
        TRAINED = "trained", "Trained here"
        REGISTERED = "registered", "Registered by an admin"

    # Unique whatever its letter case (the constraint below): the services say which version
    # has it (``selectors.model_version_name_taken``).
    name = models.CharField(max_length=200, validators=[validate_one_line])
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.POLICY)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.REGISTERED)

    class Backend(models.TextChoices):
        TRANSFORMERS = "transformers", "Transformers, in the worker process"
        VLLM = "vllm", "vLLM engine, in the worker process"
        OPENAI = "openai", "An OpenAI-compatible server"

    # A local directory, or a hub id where the deployment has internet; for an `openai` version,
    # the directory its server serves (when known here), else empty.
    path = models.CharField(max_length=1000, blank=True)
    backend = models.CharField(max_length=16, choices=Backend.choices, default=Backend.TRANSFORMERS)
    # Backend settings (e.g. base_url, model, api_key_env for `openai`); never a secret.
    backend_options = models.JSONField(default=dict, blank=True)
    # Tokens of prompt plus reply the model takes; read from its config at registration.
    context_length = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_CONTEXT_LENGTH)]
    )
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    training_run = models.ForeignKey(
        "sampler.TrainingRun",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="output_versions",
    )
    metrics = models.JSONField(default=dict, blank=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A name is one version's whatever its letter case: "Tiny-SFT" and "tiny-sft" would
            # be told apart by no one choosing a base, a filter or a version to promote.
            models.UniqueConstraint(
                Lower("name"),
                name="model_version_name_unique_any_case",
                violation_error_message="Another model version has this name (letter case aside).",
            ),
            # Exactly one policy is served at a time (promotion swaps it atomically).
            models.UniqueConstraint(
                fields=["kind"], condition=Q(is_active=True), name="one_active_version_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.name
