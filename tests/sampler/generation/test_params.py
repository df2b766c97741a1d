from sampler.generation.params import MIN_PROMPT_TOKENS, context_room_error


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
