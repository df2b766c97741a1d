"""Reading training records: a file that cannot be read says where, by the line a reader
counts (the first is line 1), whatever the buffering of the decoder behind it."""

import gzip

import pytest

from sampler.training.records import DataError, read_jsonl

GOOD = b'{"prompt": "hi", "chosen": "a", "rejected": "b"}'


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"\xff\xfe" + GOOD + b"\n", 1),
        (GOOD + b"\n" + GOOD + b"\n\xe9t\xe9\n", 3),
        # Far past the decoder's first read (8 KiB), and with Windows and old Mac line ends.
        ((GOOD + b"\r\n") * 400 + (GOOD + b"\r") * 100 + b'{"a": "\xc3"}\n' + GOOD + b"\n", 501),
    ],
)
def test_a_file_that_is_not_utf8_names_the_line_it_breaks_on(tmp_path, compress, content, line):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError) as refused:
        list(read_jsonl(path))
    assert str(refused.value) == f"bin.jsonl line {line} is not UTF-8 text."


def test_the_records_before_a_line_that_is_not_utf8_are_read(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(GOOD + b"\n" + GOOD + b"\n\xff\n")
    records = read_jsonl(path)
    assert next(records)["prompt"] == "hi" and next(records)["prompt"] == "hi"
    with pytest.raises(DataError, match="line 3 is not UTF-8"):
        next(records)


# Python's json refuses a value nested about 990 levels deep with a RecursionError; one nested
# less deep is read, and json.dumps (and the record's readers) recurse into it later.
DEEP_LINES = [
    b"[" * 10000 + b"]" * 10000,
    b'{"a":' * 100000,
    b'{"prompt": ' + b"[" * 900 + b"]" * 900 + b"}",
]


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("deep", DEEP_LINES)
def test_a_line_nested_too_deeply_is_refused_by_its_line(tmp_path, compress, deep):
    path = tmp_path / "deep.jsonl"
    content = GOOD + b"\n" + deep + b"\n"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError) as refused:
        list(read_jsonl(path))
    assert str(refused.value) == ("deep.jsonl line 2 is nested too deeply (more than 32 levels).")


def test_a_line_with_an_integer_too_long_to_read_is_refused_by_its_line(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_bytes(b'{"a": ' + b"1" * 5000 + b"}\n")
    with pytest.raises(DataError, match=r"long\.jsonl line 1 is not JSON: Exceeds the limit"):
        list(read_jsonl(path))
