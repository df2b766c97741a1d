# A run records its set of attacks. Runs made before are given the set they were taken from
# then: their project's newest ``attack_count`` attacks made by the time the run was asked for,
# and every attack they already hold a result for.

import django.db.models.deletion
from django.db import migrations, models


def _fill_run_sets(apps, schema_editor):
    Attack = apps.get_model("labeling", "Attack")
    AttackRun = apps.get_model("labeling", "AttackRun")
    AttackRunAttack = apps.get_model("labeling", "AttackRunAttack")
    for run in AttackRun.objects.iterator():
        taken = Attack.objects.filter(created_at__lte=run.created_at, project_id=run.project_id)
        attack_ids = set(
            taken.order_by("-created_at", "-id").values_list("pk", flat=True)[: run.attack_count]
        )
        attack_ids |= set(run.results.values_list("attack_id", flat=True))
        AttackRunAttack.objects.bulk_create(
            AttackRunAttack(run=run, attack_id=attack_id) for attack_id in sorted(attack_ids)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0009_guidelines_per_project"),
    ]

    operations = [
        migrations.CreateModel(
            name="AttackRunAttack",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "attack",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="run_entries",
                        to="labeling.attack",
                    ),
                ),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="entries",
                        to="labeling.attackrun",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(fields=("run", "attack"), name="attack_run_attack_once")
                ],
            },
        ),
        migrations.RunPython(_fill_run_sets, migrations.RunPython.noop),
    ]
