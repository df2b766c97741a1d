# A ranking's rationale, typed in a text area posted without htmx, stored its line breaks as
# CRLF (or a lone CR) before the ranking form took them as \n (config.forms.
# StorableMultilineCharField), as labeling's 0015 says of the writer's text: rationales saved
# then are normalised the same way, in one UPDATE touching only rows that hold a CR. No measure
# or hash is computed from a rationale.

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Replace


def _normalise_line_breaks(apps, schema_editor):
    crlf_as_lf = Replace(F("rationale"), Value("\r\n"), Value("\n"))
    apps.get_model("ranking", "Ranking").objects.filter(rationale__contains="\r").update(
        rationale=Replace(crlf_as_lf, Value("\r"), Value("\n"))
    )


class Migration(migrations.Migration):
    dependencies = [
        ("ranking", "0013_project_policy_plural"),
    ]

    operations = [
        migrations.RunPython(_normalise_line_breaks, migrations.RunPython.noop, elidable=True),
    ]
