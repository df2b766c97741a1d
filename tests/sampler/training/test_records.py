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
