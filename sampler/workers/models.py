from django.db import models


class WorkerHeartbeat(models.Model):
    """The last sign of life of one Celery worker (one row per worker node name)."""

    name = models.CharField(max_length=200, unique=True, help_text="Celery node name.")
    queues = models.JSONField(default=list, help_text="Names of the queues it consumes.")
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({', '.join(self.queues)})"
