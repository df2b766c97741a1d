"""A ranking task whose preparation failed for a reason its source message had no part in
gives the message back for another task (``RankingTask.holds_source``). Tasks that failed
before this release held their sources for good: those not refused by the content filter
(whose reasons begin "The content filter flagged") give them back now, where no other task
holds the same source."""

from django.db import migrations, models
from django.db.models import Exists, OuterRef

CONTENT_FILTER_REASON = "The content filter flagged"


def release_failed_sources(apps, schema_editor):
    RankingTask = apps.get_model("ranking", "RankingTask")
    others = RankingTask.objects.filter(source_message_id=OuterRef("source_message_id")).exclude(
        pk=OuterRef("pk")
    )
    RankingTask.objects.filter(status="failed", gold_of__isnull=True).exclude(
        error__startswith=CONTENT_FILTER_REASON
    ).exclude(Exists(others)).update(holds_source=False)


class Migration(migrations.Migration):
    dependencies = [
        ("ranking", "0009_default_project_open"),
    ]

    operations = [
        migrations.AddField(
            model_name="rankingtask",
            name="holds_source",
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(release_failed_sources, migrations.RunPython.noop),
    ]
