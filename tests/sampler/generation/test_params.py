from sampler.generation.params import (
    MIN_PROMPT_TOKENS,
    context_room_error,
    max_new_tokens_most,
    max_new_tokens_within,
)


def test_a_context_too_short_for_any_reply_says_so_rather_than_a_limit_that_fails_too():
    # 17 tokens hold a 16-token prompt and a 1-token reply: asking for at most 1 works.
    assert "ask for at most 1." in context_room_error(context_length=17, max_new_tokens=64)
    assert context_room_error(context_length=17, max_new_tokens=1) is None
    # 16 tokens or fewer hold no reply at all: no max_new_tokens fits, and none is advised.
    for context_length in (1, 8, MIN_PROMPT_TOKENS):
        message = context_room_error(context_length=context_length, max_new_tokens=1)
        assert message is not None and "ask for at most" not in message, message
        assert f"{context_length}-token context" in message
        assert "too short for any reply" in message and "context_length" in message


def test_the_most_tokens_accepted_is_the_cap_or_what_the_context_leaves():
    assert max_new_tokens_most(context_length=None, cap=256) == 256
    assert max_new_tokens_most(context_length=4096, cap=256) == 256
    assert max_new_tokens_most(context_length=64, cap=256) == 64 - MIN_PROMPT_TOKENS
    assert max_new_tokens_most(context_length=MIN_PROMPT_TOKENS, cap=256) is None
    # Every limit up to the most is accepted by the service's check, and none above it.
    for context_length in (17, 64, 300):
        most = max_new_tokens_most(context_length=context_length, cap=256)
        assert context_room_error(context_length=context_length, max_new_tokens=most) is None
        assert context_room_error(context_length=context_length, max_new_tokens=most + 1) or (
            most == 256
        )
    # within: unchanged, at least 1 where no reply fits.
    assert max_new_tokens_within(wanted=100, context_length=64, cap=256) == 48
    assert max_new_tokens_within(wanted=100, context_length=8, cap=256) == 1
