# A project's name and slug are unique whatever their letter case ("uni" and "UNI", "Keyboard"
# and "keyboard" read as one project in lists, links and exports): a constraint on each
# lowered. Projects saved before with a name or slug another has in another case keep their
# rows, tasks and data; the later made of them is renamed, as ranking 0016 renamed names that
# became another's: a name gets the first suffix " (2)", " (3)", ... free in any case, a slug
# "-2", "-3", ... (within each column's length: the text is cut before its suffix). The
# default project keeps its slug (rows made without a project find it by it). Only the rows
# that collide are written, the first made kept as it is.

import django.db.models.functions.text
from django.db import migrations, models

NAME_MAX_CHARS = 200
SLUG_MAX_CHARS = 64
DEFAULT_PROJECT_SLUG = "default"


def _free(value: str, taken: set[str], *, most: int, suffix) -> str:
    """``value`` with the first suffix that makes it one no project has in any case."""
    free, number = value, 2
    while free.lower() in taken:
        end = suffix(number)
        free = value[: most - len(end)].rstrip() + end
        number += 1
    return free


def _unique_in_any_case(apps, schema_editor):
    Project = apps.get_model("ranking", "Project")
    rows = list(Project.objects.only("pk", "name", "slug").order_by("pk"))
    # The default project first: it keeps its slug whenever it was made.
    rows.sort(key=lambda project: project.slug != DEFAULT_PROJECT_SLUG)
    for field, most, suffix in (
        ("name", NAME_MAX_CHARS, lambda number: f" ({number})"),
        ("slug", SLUG_MAX_CHARS, lambda number: f"-{number}"),
    ):
        # Every value held now is taken (a new one is none of them in any case, so no row
        # is written with one a row not yet renamed still has); the first holder keeps it.
        taken = {getattr(project, field).lower() for project in rows}
        kept: set[str] = set()
        changed = []
        for project in rows:
            value = getattr(project, field)
            if value.lower() not in kept:
                kept.add(value.lower())
                continue
            free = _free(value, taken, most=most, suffix=suffix)
            taken.add(free.lower())
            setattr(project, field, free)
            changed.append(project)
        Project.objects.bulk_update(changed, [field], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0017_undo_removal_removed_at_index'),
    ]

    operations = [
        migrations.RunPython(_unique_in_any_case, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.UniqueConstraint(django.db.models.functions.text.Lower('name'), name='project_name_unique_any_case', violation_error_message='Another project has this name (letter case aside).'),
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.UniqueConstraint(django.db.models.functions.text.Lower('slug'), name='project_slug_unique_any_case', violation_error_message='Another project has this slug (letter case aside).'),
        ),
    ]
