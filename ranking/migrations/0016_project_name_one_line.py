# A project's name is one line (config.text.validate_one_line), wherever it is written: the API,
# the Projects page and the Django admin refuse a line break or other control character in it.
# Names stored before with them are made one line, as a conversation's title was (labeling
# 0016): each run of whitespace, line breaks and control characters is one space; else the
# project could not be edited (every save checks its name). Names are unique, so a name that
# becomes one another project has is given the first free suffix " (2)", " (3)", ..., and one
# that becomes empty is "Untitled project" (suffixed the same way when taken). Only those rows
# are read and written, the first made first.

import config.text
from django.db import migrations, models

# Control characters (NUL aside: no column holds it) and the line and paragraph separators.
NOT_IN_A_LINE = "[\x01-\x1f\x7f-\x9f\u2028\u2029]"
NAME_MAX_CHARS = 200


def _name_free(name: str, taken: set[str]) -> str:
    """``name``, or with the first suffix that makes it one no project has (within the
    column's length: the name is cut before its suffix)."""
    free, number = name, 2
    while free in taken:
        suffix = f" ({number})"
        free = name[: NAME_MAX_CHARS - len(suffix)].rstrip() + suffix
        number += 1
    return free


def _names_as_one_line(apps, schema_editor):
    Project = apps.get_model("ranking", "Project")
    taken = set(Project.objects.values_list("name", flat=True))
    changed = []
    for project in Project.objects.filter(name__regex=NOT_IN_A_LINE).only("pk", "name").order_by("pk"):
        name = _name_free(config.text.as_one_line(project.name) or "Untitled project", taken)
        taken.add(name)
        project.name = name
        changed.append(project)
    Project.objects.bulk_update(changed, ["name"], batch_size=500)


class Migration(migrations.Migration):

    dependencies = [
        ('ranking', '0015_undo_removal'),
    ]

    operations = [
        migrations.RunPython(_names_as_one_line, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name='project',
            name='name',
            field=models.CharField(max_length=200, unique=True, validators=[config.text.validate_one_line]),
        ),
    ]
