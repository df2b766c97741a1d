"""How a file's records without an export's ``split`` are put on the train or test side."""

from sampler.training.records import record_split

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def _split(record: dict) -> str:
    return record_split(record, test_fraction=0.5, seed=0)


def test_a_system_message_every_conversation_shares_does_not_put_them_all_on_one_side():
    """Keyed by the first message alone, every record opening with the same system prompt fell
    on the same side: an empty test set, or nothing to train on."""
    records = [
        {
            "messages": [
                SYSTEM,
                {"role": "user", "content": f"question {index}"},
                {"role": "assistant", "content": f"answer {index}"},
            ]
        }
        for index in range(40)
    ]
    sides = [_split(record) for record in records]
    assert 5 < sides.count("test") < 35


def test_a_demonstration_and_a_ranking_of_one_conversation_fall_on_the_same_side():
    """A ranking's prompt runs up to the ranked turn, a demonstration to its end: both are
    keyed by the conversation's opening, so a reward model is not tested on a conversation the
    policy was fine-tuned on under the same seed, nor the other way round."""
    for index in range(40):
        opening = [SYSTEM, {"role": "user", "content": f"question {index}"}]
        later = [
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "and then?"},
        ]
        demonstration = {"messages": [*opening, *later, {"role": "assistant", "content": "a"}]}
        ranking = {"prompt": [*opening, *later], "chosen": "x", "rejected": "y"}
        pair = {"prompt": [*opening], "chosen": [{"role": "assistant", "content": "z"}]}
        assert _split(demonstration) == _split(ranking) == _split(pair)


def test_an_exported_split_and_a_conversation_id_come_first():
    record = {"messages": [SYSTEM], "split": "test"}
    assert _split(record) == "test"
    assert record_split({**record, "split": "train"}, test_fraction=1.0, seed=0) == "train"
    sides = {_split({"conversation_id": index, "messages": [SYSTEM]}) for index in range(40)}
    assert sides == {"train", "test"}


def test_trls_implicit_prompt_pairs_are_split_by_the_conversation_in_chosen():
    """No prompt: the pair's conversation is its chosen (and rejected) messages. Keyed by
    nothing, every such record fell on the same side."""
    records = [
        {
            "chosen": [
                {"role": "user", "content": f"question {index}"},
                {"role": "assistant", "content": "good"},
            ],
            "rejected": [
                {"role": "user", "content": f"question {index}"},
                {"role": "assistant", "content": "bad"},
            ],
        }
        for index in range(40)
    ]
    sides = [_split(record) for record in records]
    assert 5 < sides.count("test") < 35
