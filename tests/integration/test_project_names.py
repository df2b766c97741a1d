"""Project names that differ in letter case only as PostgreSQL folds them (its lower(), which
the constraints on Lower(name) use), though iexact's upper() keeps them apart: the services'
check refuses them on the field, naming the project's, as for any clash in case."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from ranking.projects.models import Project
from ranking.projects.services import project_create

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.mark.parametrize(
    ("stored", "given"),
    [
        ("Kelvin", "\u212aelvin"),  # the Kelvin sign: lower() makes it "k", upper() keeps it
        ("\u0130stanbul", "istanbul"),  # the dotted capital I: lower() makes it "i"
    ],
)
def test_a_name_that_folds_to_another_project_s_is_refused_naming_it(stored, given):
    with connection.cursor() as cursor:
        cursor.execute("SELECT lower(%s) = lower(%s), upper(%s) = upper(%s)", [stored, given] * 2)
        # The database (a UTF-8 one) folds them alike, and iexact's comparison does not.
        assert cursor.fetchone() == (True, False)
    project_create(name=stored, slug="first")

    with pytest.raises(ValidationError) as refused:
        project_create(name=given, slug="second")

    assert refused.value.message_dict == {
        "name": [
            f"A project with the name {stored!r} already exists; names that differ only in "
            "letter case are one."
        ]
    }
    assert not Project.objects.filter(slug="second").exists()
