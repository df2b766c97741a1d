# A result outlives its attack's withdrawal (in a run that succeeded): it keeps the category and
# the prompt's last user turn, copied here for the results stored before.

import django.db.models.deletion
from django.db import migrations, models


def _copy_from_attacks(apps, schema_editor):
    AttackResult = apps.get_model("labeling", "AttackResult")
    for result in AttackResult.objects.select_related("attack").iterator():
        messages = result.attack.prompt_messages or []
        result.category = result.attack.category
        result.prompt = next(
            (m["content"] for m in reversed(messages) if m.get("role") == "user"), ""
        )
        result.save(update_fields=["category", "prompt"])


def _drop_results_without_attack(apps, schema_editor):
    apps.get_model("labeling", "AttackResult").objects.filter(attack__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0011_attack_run_generation_job"),
    ]

    operations = [
        migrations.AddField(
            model_name="attackresult",
            name="category",
            field=models.CharField(
                blank=True,
                choices=[
                    ("jailbreak", "Jailbreak (ignored its rules)"),
                    ("harmful", "Harmful content"),
                    ("false", "False or made-up answer"),
                    ("privacy", "Privacy leak"),
                    ("other", "Other"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="attackresult",
            name="prompt",
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name="attackresult",
            name="attack",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="results",
                to="labeling.attack",
            ),
        ),
        # Back: the results of withdrawn attacks have no place where a result needs its attack.
        migrations.RunPython(_copy_from_attacks, _drop_results_without_attack),
    ]
