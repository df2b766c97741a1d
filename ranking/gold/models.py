from django.conf import settings
from django.db import models


class Qualification(models.Model):
    """A trainer's qualification for a project: decided once they ranked its N gold tasks."""

    class Status(models.TextChoices):
        PENDING = "pending", "Ranking gold tasks"
        PASSED = "passed", "Qualified"
        FAILED = "failed", "Not qualified"

    project = models.ForeignKey(
        "ranking.Project", on_delete=models.CASCADE, related_name="qualifications"
    )
    trainer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="qualifications"
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    gold_ranked = models.PositiveSmallIntegerField(default=0)
    accuracy = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "trainer"]
        constraints = [
            models.UniqueConstraint(fields=["project", "trainer"], name="qualification_once"),
        ]

    def __str__(self) -> str:
        return f"{self.trainer_id} in {self.project_id}: {self.status}"
