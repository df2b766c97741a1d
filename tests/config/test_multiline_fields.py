"""Text areas take line breaks as typed, whichever way a plain form posted them (CRLF)."""

import pytest

from labeling.redteam.forms import AttackForm
from ranking.rank.forms import RankingForm
from sampler.generation.forms import GenerateForm

POSTED = "first line\r\nsecond line\rthird"
TYPED = "first line\nsecond line\nthird"


@pytest.mark.parametrize(
    ("form", "field"),
    [
        (
            lambda data: RankingForm(
                {**data, "verdict": "all_equal"}, candidates=[{"id": 1, "text": "a"}]
            ),
            "rationale",
        ),
        (lambda data: AttackForm({**data, "category": "other"}), "note"),
        (lambda data: GenerateForm({**data, "n": "1"}), "message"),
    ],
    ids=["ranking rationale", "attack note", "playground prompt"],
)
def test_a_textareas_crlf_is_stored_as_typed(db, form, field):
    bound = form({field: POSTED})
    bound.is_valid()
    assert bound.cleaned_data[field] == TYPED


def test_a_ranking_rationale_with_a_nul_is_refused_with_the_apis_words():
    bound = RankingForm(
        {"verdict": "all_equal", "rationale": "bad\x00"}, candidates=[{"id": 1, "text": "a"}]
    )
    assert not bound.is_valid()
    assert "rationale" in bound.errors
