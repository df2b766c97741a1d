"""Special tokens and the chat template of the embedded chat model.

A conversation renders as ``<|user|>hi<|end|><|assistant|>hello<|end|>...``: no spaces or
newlines between turns, so every character of the rendered string is either a special token or
human text. ``<|end|>`` is the tokenizer's eos token, so generation stops at the end of a turn.
"""

USER = "<|user|>"
ASSISTANT = "<|assistant|>"
SYSTEM = "<|system|>"
END_OF_TURN = "<|end|>"
# A distinct pad token: with pad == eos, attention masks built from "token != pad" would also
# hide real end-of-turn tokens, and a trainer masking pad out of the loss would never teach the
# model to stop.
PAD = "<|pad|>"

# Order fixes the ids (pad = 0, end = 1, ...), which keeps them stable across vocabulary sizes.
SPECIAL_TOKENS = (PAD, END_OF_TURN, USER, ASSISTANT, SYSTEM)

ROLE_MARKERS = {"user": USER, "assistant": ASSISTANT, "system": SYSTEM}

# Content is stripped here, in the template, so that data preparation and inference agree.
# `{% generation %}` wraps the assistant content and its end token: that span is exactly what
# `apply_chat_template(..., return_assistant_tokens_mask=True)` marks, i.e. what the assistant
# is trained to produce, stopping included. Written without line breaks on purpose: any
# whitespace outside the tags would be rendered into the prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '" + ASSISTANT + "' }}"
    "{%- generation -%}"
    "{{ message['content'] | trim }}{{ '" + END_OF_TURN + "' }}"
    "{%- endgeneration -%}"
    "{%- elif message['role'] in ['user', 'system'] -%}"
    "{{ '<|' + message['role'] + '|>' }}{{ message['content'] | trim }}{{ '" + END_OF_TURN + "' }}"
    "{%- else -%}"
    "{{ raise_exception('Unknown role: ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '" + ASSISTANT + "' }}{%- endif -%}"
)


def render_conversation(messages: list[dict[str, str]]) -> str:
    """The template's output, in Python: used to render training text without Jinja per row.

    `tests/sampler/test_embedded_model.py` checks that both agree.
    """
    return "".join(
        f"{ROLE_MARKERS[message['role']]}{message['content'].strip()}{END_OF_TURN}"
        for message in messages
    )
