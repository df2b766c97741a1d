"""At most one ranking task holds its source message (``RankingTask.holds_source``), now a
database constraint where it was kept by the services alone (under the project's lock).

An install may hold more than one holder of a source already, and the constraint could not be
added over them, so they are released first:

- Gold copies: they were made holding the source of the task they copy; the task they copy
  holds it, and a copy holds it no more (as copies are made now).
- Any other source with two or more holders keeps one of them and the rest give it up. The
  one kept is a task that has not failed, where there is one: a task being prepared, ready or
  complete is what the source was used for, and a failed one that is retried then finds the
  source taken and stays failed, rather than making a second live task of it. Among those,
  the newest (then the highest id): the latest use of the source. Which one keeps it changes
  nothing else: a source is not picked again while any task holds it.
"""

from django.db import migrations, models
from django.db.models import Count, Q


def release_extra_holders(apps, schema_editor):
    RankingTask = apps.get_model("ranking", "RankingTask")
    RankingTask.objects.filter(gold_of__isnull=False, holds_source=True).update(
        holds_source=False
    )
    holders = RankingTask.objects.filter(holds_source=True)
    shared = (
        holders.order_by()
        .values("source_message_id")
        .annotate(holders=Count("pk"))
        .filter(holders__gt=1)
        .values_list("source_message_id", flat=True)
    )
    for source_id in list(shared):
        tasks = list(
            holders.filter(source_message_id=source_id).values_list("pk", "status", "created_at")
        )
        kept = max(tasks, key=lambda task: (task[1] != "failed", task[2], task[0]))[0]
        holders.filter(source_message_id=source_id).exclude(pk=kept).update(holds_source=False)


class Migration(migrations.Migration):
    dependencies = [
        ("ranking", "0011_dataset_export_skipped"),
    ]

    operations = [
        migrations.RunPython(release_extra_holders, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="rankingtask",
            constraint=models.UniqueConstraint(
                condition=Q(holds_source=True),
                fields=("source_message",),
                name="task_one_holder_per_source",
            ),
        ),
    ]
