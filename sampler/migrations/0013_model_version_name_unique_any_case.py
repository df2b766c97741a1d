# A model version's name is unique whatever its letter case ("Tiny-SFT" and "tiny-sft" were two
# versions that every choice by name, --base, --model-version, promote, confused): a constraint
# on the name lowered replaces the plain unique one. Versions saved before with a name another
# has in another case keep their rows, runs, jobs and samples; the first registered (the
# smallest id) keeps its name, each later one gets the first suffix " (2)", " (3)", ... free in
# any case (the name cut before the suffix to stay within its 200 characters), as ranking 0018
# renamed projects; a policy's metrics naming a renamed reward model follow it. Only the
# versions that collide, and those naming one, are written.

from django.db import migrations, models
from django.db.models import Value
from django.db.models.functions import Lower

import config.text

NAME_MAX_CHARS = 200


def _names_unique_in_any_case(apps, schema_editor):
    ModelVersion = apps.get_model("sampler", "ModelVersion")
    # Folded by the database, as the constraint folds (SQLite's lower() folds ASCII alone).
    folded = ModelVersion.objects.alias(folded=Lower("name"))
    kept: set[str] = set()
    renamed: dict[str, str] = {}
    for pk, name, fold in (
        folded.annotate(fold=Lower("name")).values_list("pk", "name", "fold").order_by("pk")
    ):
        if fold not in kept:
            kept.add(fold)
            continue
        # The first " (n)" no version has in any case; each renamed one is saved at once, so a
        # later one's name is checked against it too.
        number = 2
        while True:
            suffix = f" ({number})"
            free = name[: NAME_MAX_CHARS - len(suffix)].rstrip() + suffix
            if not folded.filter(folded=Lower(Value(free))).exists():
                break
            number += 1
        ModelVersion.objects.filter(pk=pk).update(name=free)
        renamed[name] = free
    # A PPO policy names the reward model it was optimised against by name in its metrics (the
    # comparisons' independent judges leave that one out): it follows the rename.
    for version in ModelVersion.objects.only("pk", "metrics").iterator():
        metrics = version.metrics if isinstance(version.metrics, dict) else {}
        reward = metrics.get("reward_version")
        if isinstance(reward, str) and reward in renamed:
            metrics["reward_version"] = renamed[reward]
            ModelVersion.objects.filter(pk=version.pk).update(metrics=metrics)


class Migration(migrations.Migration):
    dependencies = [
        ("sampler", "0012_content_filter_problem"),
    ]

    operations = [
        migrations.RunPython(_names_unique_in_any_case, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="modelversion",
            constraint=models.UniqueConstraint(
                Lower("name"),
                name="model_version_name_unique_any_case",
                violation_error_message="Another model version has this name (letter case aside).",
            ),
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="name",
            field=models.CharField(max_length=200, validators=[config.text.validate_one_line]),
        ),
    ]
