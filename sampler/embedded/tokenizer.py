"""A byte-level BPE tokenizer trained on our own text, with the chat format built in."""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from sampler.embedded.chat_format import CHAT_TEMPLATE, END_OF_TURN, PAD, SPECIAL_TOKENS


def train_tokenizer(texts: Iterable[str], *, vocab_size: int) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` and wrap it for `transformers`.

    Byte-level means any string encodes without unknown tokens. No bos token: every
    conversation already starts with a role marker, which plays that part.
    """
    tokenizer = Tokenizer(models.BPE())
    # add_prefix_space=False: text follows a role marker directly, and decoding must give back
    # exactly what was encoded.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps character offsets exact; assistant-token masks are computed from
    # them.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        # All 256 byte symbols, seen in the corpus or not, so every string stays encodable.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TURN,
        pad_token=PAD,
        additional_special_tokens=[
            token for token in SPECIAL_TOKENS if token not in (END_OF_TURN, PAD)
        ],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        model_max_length=None,
        clean_up_tokenization_spaces=False,
    )
