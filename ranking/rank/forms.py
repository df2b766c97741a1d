"""The ranking form: one rank number per reply (equal numbers are a tie), flags, a rationale.

Fields are made per reply (``rank_<n>``, ``flag_<n>``, ``flag_note_<n>``, where
``<n>`` is the number the reply is shown under, never a row id: see ``ranking.rank.selectors``),
so the page works as a plain form; ranking.js only fills the rank numbers in from the list
order. Lengths, unknown replies, "other needs a note" and "a note needs a flag" are checked by
the service.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms

from config.forms import StorableCharField, StorableMultilineCharField
from ranking.rank.models import Ranking
from ranking.rank.services import FLAGS, RankingInput

FLAG_LABELS = {
    "harmful": "Harmful",
    "untruthful": "Untruthful",
    "unhelpful": "Unhelpful",
    "off_topic": "Off-topic",
    "other": "Other",
}


def reply_letter(index: int) -> str:
    """Replies are numbered from 1 as shown: the number is also the key that places them."""
    return str(index + 1)


@dataclass(frozen=True)
class CandidateRow:
    """One reply as the ranking list shows it, with what the trainer entered for it."""

    # The number the reply is shown under: what its fields and elements are named by.
    id: int
    letter: str
    text: str
    rank: str
    flags: list[str]
    note: str
    rank_invalid: bool
    # The content filter's verdict on the reply as the screen shows it (None: none shown).
    moderation: object | None = None


VERDICTS = [
    (Ranking.Verdict.ALL_EQUAL, "All equally good"),
    (Ranking.Verdict.ALL_BAD, "All bad"),
    (Ranking.Verdict.CANNOT_RANK, "Cannot rank"),
]


class RankingForm(forms.Form):
    # Empty: the replies are ranked. Otherwise one verdict about all of them (with a reason).
    verdict = forms.ChoiceField(required=False, choices=[("", "Ranked"), *VERDICTS])
    rationale = StorableMultilineCharField(required=False, strip=False, widget=forms.Textarea)
    first_placement_ms = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)

    def __init__(self, *args, candidates: list[dict], **kwargs) -> None:
        """``candidates``: ``{"id", "text"}`` dicts in presentation order, ``id`` the number
        the reply is shown under (``AssignmentScreen.candidates``)."""
        super().__init__(*args, **kwargs)
        self.candidates = candidates
        self.letters = {
            candidate["id"]: reply_letter(index) for index, candidate in enumerate(candidates)
        }
        for candidate in candidates:
            number = candidate["id"]
            self.fields[f"rank_{number}"] = forms.CharField(required=False)
            self.fields[f"flag_{number}"] = forms.MultipleChoiceField(
                required=False, choices=[(name, FLAG_LABELS[name]) for name in FLAGS]
            )
            self.fields[f"flag_note_{number}"] = StorableCharField(required=False)

    def clean(self) -> dict:
        cleaned = super().clean()
        count = len(self.candidates)
        for candidate in self.candidates:
            name = f"rank_{candidate['id']}"
            # The field's own refusal (a NUL character) is told once, as a rank that is no
            # whole number, not as a missing rank.
            refused = self.errors.pop(name, None) is not None
            if cleaned.get("verdict"):
                # A verdict ranks nothing: numbers typed before it was chosen are left out.
                cleaned[name] = None
                continue
            raw = (cleaned.get(name) or "").strip()
            if not raw and not refused:
                self.add_error(
                    name,
                    f"Reply {self.letters[candidate['id']]} has no rank: "
                    f"give every reply a number from 1 (best) to {count}.",
                )
                cleaned[name] = None
                continue
            try:
                rank = int(raw)
            except ValueError:
                rank = 0
            if not 1 <= rank <= count:
                self.add_error(
                    name,
                    f"Reply {self.letters[candidate['id']]}: the rank must be a whole number "
                    f"from 1 (best) to {count}.",
                )
            cleaned[name] = rank
        return cleaned

    def error_messages(self) -> list[str]:
        """The form's messages, a text box's named (its own refusal, a NUL, does not say which
        box). A refused choice is quoted in its message: never a NUL into the page."""
        return [
            (f"{label}: {error}" if (label := self._text_label(name)) else error).replace(
                "\x00", ""
            )
            for name, errors in self.errors.items()
            for error in errors
        ]

    def _text_label(self, name: str) -> str:
        if name == "rationale":
            return "Rationale"
        if name.startswith("flag_note_") and (letter := self._letter(name[len("flag_note_") :])):
            return f"Reply {letter}'s flag note"
        return ""

    def _letter(self, number: str) -> str:
        try:
            return self.letters.get(int(number), "")
        except ValueError:
            return ""

    def typed(self, name: str) -> str:
        """A text field as typed, valid or not (less a NUL character, which a page may not
        hold): what comes back into its box, with the reasons, when the answer is refused."""
        value = self[name].value() if name in self.fields else self.data.get(name)
        return "" if value is None else str(value).replace("\x00", "")

    def _display_order(self) -> list[int]:
        """Reply numbers in the order the list showed them when submitted (``order`` inputs);
        presentation order for a fresh form or when the posted order is not a permutation."""
        ids = [candidate["id"] for candidate in self.candidates]
        if not self.is_bound:
            return ids
        try:
            posted = [int(value) for value in self.data.getlist("order")]
        except (AttributeError, ValueError):
            return ids
        return posted if sorted(posted) == sorted(ids) else ids

    def ranking_input(self) -> RankingInput:
        """The valid form as the service's input: tie groups by rank number, best first, each
        reply by the number it is shown under (``services.ranking_submit_shown``)."""
        cleaned = self.cleaned_data
        groups: dict[int, list[int]] = {}
        if not cleaned["verdict"]:
            # Within a tie, replies keep the order the trainer saw them in.
            for number in self._display_order():
                groups.setdefault(cleaned[f"rank_{number}"], []).append(number)
        ids = [candidate["id"] for candidate in self.candidates]
        return RankingInput(
            ordering=[groups[rank] for rank in sorted(groups)],
            cannot_rank=cleaned["verdict"]
            in {Ranking.Verdict.ALL_BAD, Ranking.Verdict.CANNOT_RANK},
            verdict=cleaned["verdict"] or Ranking.Verdict.RANKED,
            first_placement_ms=cleaned["first_placement_ms"],
            flags={
                number: cleaned[f"flag_{number}"] for number in ids if cleaned[f"flag_{number}"]
            },
            flag_notes={
                number: cleaned[f"flag_note_{number}"]
                for number in ids
                if cleaned[f"flag_note_{number}"]
            },
            rationale=cleaned["rationale"],
        )

    def rows(self) -> list[CandidateRow]:
        """The replies in display order with the values as entered (kept on a re-render)."""
        by_id = {candidate["id"]: candidate for candidate in self.candidates}
        # Only a validated form marks bad ranks (a skip that failed re-renders without checking).
        invalid = set(self._errors or {})
        rows = []
        for number in self._display_order():
            rows.append(
                CandidateRow(
                    id=number,
                    letter=self.letters[number],
                    text=by_id[number]["text"],
                    rank=self.typed(f"rank_{number}"),
                    flags=list(self[f"flag_{number}"].value() or []),
                    note=self.typed(f"flag_note_{number}"),
                    rank_invalid=f"rank_{number}" in invalid,
                    moderation=by_id[number].get("moderation"),
                )
            )
        return rows
