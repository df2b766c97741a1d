"""Feedback on model-written text: thumbs, reports and filter disputes."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from labeling.conversations.models import Message
from ranking.projects.models import project_key


class Feedback(models.Model):
    """One trainer's opinion of one model-written message or one sample: thumbs, a report, and
    whether the content filter got it wrong. One per user and target, edited in place."""

    class Rating(models.TextChoices):
        UP = "up", "Thumbs up"
        DOWN = "down", "Thumbs down"

    class Category(models.TextChoices):
        HARMFUL = "harmful", "Harmful"
        UNTRUTHFUL = "untruthful", "Untruthful"
        BIASED = "biased", "Biased"
        REFUSES_WRONGLY = "refuses_wrongly", "Refuses wrongly"
        OTHER = "other", "Other"

    class FilterReport(models.TextChoices):
        FALSE_POSITIVE = "false_positive", "Flagged by the filter, but it is fine"
        FALSE_NEGATIVE = "false_negative", "Not flagged by the filter, but it should be"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="feedback"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    sample = models.ForeignKey(
        "sampler.Sample", null=True, blank=True, on_delete=models.CASCADE, related_name="feedback"
    )
    # The model that wrote the target, copied so counts per model version need no joins.
    model_version = models.ForeignKey(
        "sampler.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback",
    )
    rating = models.CharField(max_length=8, choices=Rating.choices, blank=True)
    # Report categories, a list of Category values (empty: no report).
    categories = models.JSONField(default=list, blank=True)
    comment = models.TextField(max_length=2000, blank=True)
    filter_report = models.CharField(max_length=16, choices=FilterReport.choices, blank=True)
    # The filter result a filter report disputes (its filter name and version count it).
    moderation = models.ForeignKey(
        "sampler.ModerationResult",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="filter_reports",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    project = project_key("feedback")

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            models.Index(fields=["model_version", "updated_at"]),
            models.Index(fields=["filter_report"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(message__isnull=True, sample__isnull=False)
                | Q(message__isnull=False, sample__isnull=True),
                name="feedback_has_exactly_one_target",
            ),
            models.UniqueConstraint(
                fields=["user", "message"],
                condition=Q(message__isnull=False),
                name="feedback_one_per_user_and_message",
            ),
            models.UniqueConstraint(
                fields=["user", "sample"],
                condition=Q(sample__isnull=False),
                name="feedback_one_per_user_and_sample",
            ),
            models.CheckConstraint(
                condition=Q(filter_report="") | Q(moderation__isnull=False),
                name="feedback_filter_report_names_its_result",
            ),
        ]

    def __str__(self) -> str:
        target = f"message {self.message_id}" if self.message_id else f"sample {self.sample_id}"
        return f"Feedback by {self.user_id} on {target}"
