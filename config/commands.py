"""What the management commands share in how they refuse their options."""

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError


def option_errors(
    error: ValidationError, names: dict[str, str], labels: dict[str, str] | None = None
) -> str:
    """``error``'s messages as one line, each field named by the option that gave it (``names``;
    a field not there by its own name). A message that opens with its field's name (``test_fraction
    must be between ...``) says the option there instead, once: ``--test-fraction must be
    between ...``; one that opens with its field's label (``labels``: what the pages call it)
    keeps it and says the option after it: ``Batch size (--batch-size) must be between ...``;
    the others follow it: ``--data: No file at x.`` A field's messages are said together."""
    labels = labels or {}
    problems = []
    for key, messages in error.message_dict.items():
        said = " ".join(messages)
        label = labels.get(key)
        if key == NON_FIELD_ERRORS:
            problems.append(said)
        elif label and key in names and said.startswith((f"{label} ", f"{label}:")):
            problems.append(f"{label} ({names[key]}){said.removeprefix(label)}")
        elif said.startswith((f"{key} ", f"{key}:")):
            problems.append(names.get(key, key) + said.removeprefix(key))
        else:
            problems.append(f"{names.get(key, key)}: {said}")
    return "; ".join(problems)
