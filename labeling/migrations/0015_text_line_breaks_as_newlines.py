# Text areas posted without htmx stored their line breaks as CRLF (or a lone CR) before their
# form fields took them as \n (config.forms.MultilineCharField): the same text compared, counted
# and exported differently by how it was sent. Text saved then is normalised the same way, one
# UPDATE per column, touching only rows that hold a CR.
#
# A model-written turn (origin model or model_edited) keeps its text: its edit distance, and
# origin model (the sample's very text), were measured on the stored text against the model's,
# and a Levenshtein distance cannot be recomputed in one statement; normalising it would leave
# the recorded measure describing a text no longer stored. A human turn has no such measure
# (a database constraint keeps it without a sample). Copies of turns kept as records of what a
# model was sent (a job's or an attack's prompt messages) are left as sent. No stored hash is
# computed from these columns: a training run records the sha256 of the rows it read and resumes
# on the snapshot of those rows kept beside its checkpoints, not on the database.

from django.db import migrations
from django.db.models import F, Value
from django.db.models.functions import Replace

# (model, text column, rows to normalise)
COLUMNS = [
    ("Message", "content", {"origin": "human"}),
    ("Draft", "content", {}),
    ("Conversation", "instructions", {}),
    ("Feedback", "comment", {}),
    ("GuidelineVersion", "text", {}),
    ("Attack", "note", {}),
]


def _newlines(column: str):
    crlf_as_lf = Replace(F(column), Value("\r\n"), Value("\n"))
    return Replace(crlf_as_lf, Value("\r"), Value("\n"))


def _normalise_line_breaks(apps, schema_editor):
    for model, column, rows in COLUMNS:
        apps.get_model("labeling", model).objects.filter(
            **rows, **{f"{column}__contains": "\r"}
        ).update(**{column: _newlines(column)})


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0014_message_model_original"),
    ]

    operations = [
        migrations.RunPython(_normalise_line_breaks, migrations.RunPython.noop, elidable=True),
    ]
