"""Batch JSONL lines: splitting on any chunk boundary, the caps, what a line may cost, BOMs, and streaming rewrites."""

from __future__ import annotations

import itertools
import json
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from config.errors import InvalidRequest
from providers.base import CHUNK_SIZE
from providers.batch import (
    BOM,
    MAX_LINE_DEPTH,
    MAX_LINE_TOKENS,
    BatchLineValidator,
    LineSplitter,
    Rewriter,
    parse_line,
    rewrite_lines,
    split_lines,
)
from providers.batch_bedrock import BedrockRewriter
from providers.batch_vertex import VertexRewriter
from tests.conftest import batch_line

MIB = 1024 * 1024
CAP = 8 * MIB  # the BATCH_LINE_MAX_BYTES default

REWRITERS: dict[str, Callable[[], Rewriter]] = {
    "bedrock": lambda: BedrockRewriter(default_model="anthropic.claude-3-haiku-20240307-v1:0"),
    "vertex": lambda: VertexRewriter(default_model="gemini-2.5-flash"),
}


def chat_line(custom_id: str) -> bytes:
    """An OpenAI chat line every rewriter can rewrite (the model comes from the default)."""
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
    return json.dumps({**line, "body": {"messages": [{"role": "user", "content": "hi"}]}}).encode() + b"\n"


def splits(content: bytes) -> Iterator[list[bytes]]:
    """``content`` cut in two at every offset, then byte by byte."""
    for cut in range(len(content) + 1):
        yield [content[:cut], content[cut:]]
    yield [content[n : n + 1] for n in range(len(content))]


def error_of(action: Callable[[], Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        action()
    return raised.value


def pulling(chunks: Iterator[bytes]) -> tuple[Iterator[bytes], list[int]]:
    """``chunks`` with a running count of the bytes pulled from them."""
    pulled = [0]

    def source() -> Iterator[bytes]:
        for chunk in chunks:
            pulled[0] += len(chunk)
            yield chunk

    return source(), pulled


# Splitting.


def test_it_splits_lines_the_same_at_every_chunk_boundary() -> None:
    content = b'{"a": 1}\r\n{"b": 2}\n{"c": "x\\ny"}\r\n{"d": 4}'
    expected = [(1, b'{"a": 1}'), (2, b'{"b": 2}'), (3, b'{"c": "x\\ny"}'), (4, b'{"d": 4}')]
    for chunks in splits(content):
        assert list(split_lines(chunks, max_line_bytes=100)) == expected


@pytest.mark.parametrize(
    ("content", "lines"),
    [
        (b"{}\n", 1),
        (b"{}", 1),  # the last line needs no newline
        (b"{}\r\n{}\r\n", 2),
        (b"{}\n{}\n  ", 2),  # whitespace after the last newline is not a line
        (b"{}\n\t ", 1),
    ],
)
def test_it_counts_lines_with_or_without_a_final_newline(content: bytes, lines: int) -> None:
    assert [number for number, _ in split_lines([content], max_line_bytes=100)] == list(range(1, lines + 1))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{}\n\n{}\n", "line 2: the line is empty"),
        (b"{}\r\n\r\n{}\r\n", "line 2: the line is empty"),
        (b"{}\n   \n{}\n", "line 2: the line is empty"),
        (b"\n", "line 1: the line is empty"),
        (b"", "line 1: the file has no request lines"),
        (b" ", "line 1: the file has no request lines"),
    ],
)
def test_it_refuses_empty_lines_and_files_without_lines(content: bytes, message: str) -> None:
    error = error_of(lambda: list(split_lines([content], max_line_bytes=100)))
    assert error.message == f"Invalid batch file: {message}."
    assert (error.status_code, error.code, error.param) == (400, "invalid_batch_file", "file")


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_line_of_exactly_the_cap_passes_and_one_byte_more_is_refused(newline: bytes) -> None:
    fits, over = b"x" * 10, b"x" * 11
    for chunks in splits(b"{}" + newline + fits + newline):
        assert list(split_lines(chunks, max_line_bytes=10))[-1] == (2, fits)
    for chunks in splits(b"{}" + newline + over + newline):
        assert error_of(lambda c=chunks: list(split_lines(c, max_line_bytes=10))).message == (
            "Invalid batch file: line 2: the line is longer than 10 bytes."
        )


def test_a_carriage_return_is_counted_unless_a_newline_follows() -> None:
    splitter = LineSplitter(max_line_bytes=3)
    assert list(splitter.feed(b"abc\r")) == []
    assert list(splitter.feed(b"\nab")) == [(1, b"abc")]
    with pytest.raises(InvalidRequest, match="line 2: the line is longer than 3 bytes"):
        list(splitter.feed(b"c\rd"))


def test_a_40_mib_line_is_refused_after_at_most_the_cap_and_one_chunk() -> None:
    source, pulled = pulling(itertools.chain([batch_line("a")], itertools.repeat(b"7" * 65536, 640)))
    error = error_of(lambda: list(split_lines(source, max_line_bytes=CAP)))
    assert error.message == f"Invalid batch file: line 2: the line is longer than {CAP} bytes."
    assert pulled[0] <= len(batch_line("a")) + CAP + 65536


def test_refusing_an_overlong_line_holds_no_more_than_the_cap() -> None:
    chunks = (b"7" * MIB for _ in range(40))
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="longer than"):
            list(split_lines(chunks, max_line_bytes=CAP))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < CAP + 3 * MIB


# Parsing one line at bounded cost.


def nested(depth: int) -> bytes:
    return b'{"a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def tokens(count: int) -> bytes:
    """A line of exactly ``count`` tokens: ``{``, ``"a"``, ``:``, ``[`` and ``count - 4`` commas."""
    return b'{"a": [' + b"0," * (count - 4) + b"0]}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (BOM + b"{}", "the line starts with a UTF-8 byte order mark; save the file as UTF-8 without a byte order mark"),
        (nested(MAX_LINE_DEPTH + 1), f"the line is nested deeper than {MAX_LINE_DEPTH} levels"),
        (b"[" * 200_000 + b"]" * 200_000, f"the line is nested deeper than {MAX_LINE_DEPTH} levels"),
        (b"{" * 200_000, f"the line is nested deeper than {MAX_LINE_DEPTH} levels"),
        (tokens(MAX_LINE_TOKENS + 1), f"the line holds more than {MAX_LINE_TOKENS} JSON tokens"),
        (b'["' + b'","' * MAX_LINE_TOKENS + b'"]', f"the line holds more than {MAX_LINE_TOKENS} JSON tokens"),
        (b'{"a": "\xff"}', "the line is not valid UTF-8"),
        (b'{"a": "\xed\xa0\x80"}', "the line is not valid UTF-8"),  # an encoded surrogate
        (b'{"a": 1', "the line is not valid JSON"),
        (b'{"a": NaN}', "the line is not valid JSON"),
        (b'{"a": -Infinity}', "the line is not valid JSON"),
        (b'{"a": ' + b"9" * 5000 + b"}", "the line is not valid JSON"),
        (b'{"a": "unterminated' + b"[" * 100, "the line is not valid JSON"),
        (b"]" * 100 + b"{}", "the line is not valid JSON"),
        (b'{"a": 1} {"b": 2}', "the line is not valid JSON"),
        (b"[1, 2]", "the line is not a JSON object"),
        (b'"text"', "the line is not a JSON object"),
    ],
    ids=lambda value: value[:24] if isinstance(value, bytes) else None,
)
def test_parse_line_refuses_with_the_line_number(raw: bytes, message: str) -> None:
    error = error_of(lambda: parse_line(7, raw))
    assert error.message.startswith(f"Invalid batch file: line 7: {message}")
    assert (error.status_code, error.code, error.param) == (400, "invalid_batch_file", "file")


@pytest.mark.parametrize(
    "raw",
    [
        nested(MAX_LINE_DEPTH),
        tokens(MAX_LINE_TOKENS),
        # Brackets, commas, colons and quotes inside strings are text, not structure.
        b'{"a": "' + b"[{" * 1000 + b'"}',
        b'{"a": "' + b", : " * MAX_LINE_TOKENS + b'"}',
        b'{"a": "' + b'\\"' * (2 * MAX_LINE_TOKENS) + b'", "b": "\\\\"}',
        b'{"\xc3\xa9": "\\ud83d\\ude00 \xf0\x9f\x98\x80"}',
    ],
    ids=["deepest", "most-tokens", "brackets-in-text", "commas-in-text", "escaped-quotes", "non-ascii"],
)
def test_parse_line_accepts_lines_at_the_limits(raw: bytes) -> None:
    assert isinstance(parse_line(1, raw), dict)


def test_a_line_at_the_cap_made_of_tiny_values_costs_almost_nothing_to_refuse() -> None:
    prefix = b'{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"input": ['
    raw = prefix + b"0," * ((CAP - len(prefix)) // 2 - 2) + b"0]}}"
    assert CAP - 8 < len(raw) <= CAP
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="more than 500000 JSON tokens"):
            parse_line(1, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    "values",
    [b"[]", b"{}", b'"ab"', b"1000", b"1.5", '"é😀 text"'.encode()],
    ids=["lists", "objects", "strings", "ints", "floats", "astral-text"],
)
def test_the_most_a_line_can_cost_to_parse_is_bounded(values: bytes) -> None:
    raw = b'{"a": [' + b",".join(itertools.repeat(values, MAX_LINE_TOKENS // 2 - 4)) + b"]}"
    tracemalloc.start()
    try:
        parsed = parse_line(1, raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(parsed["a"]) == MAX_LINE_TOKENS // 2 - 4
    # The bound providers/batch.py states: about 40 bytes a token, 8 bytes a byte of the line.
    assert peak < 40 * MAX_LINE_TOKENS + 8 * len(raw)


# OpenAI's batch-line rules, checked chunk by chunk.


def test_batch_validator_checks_lines_split_across_any_chunk_boundary() -> None:
    content = batch_line("a") + batch_line("b") + batch_line("a")
    for chunks in splits(content):
        validator = BatchLineValidator(max_line_bytes=MIB)
        with pytest.raises(InvalidRequest, match="line 3: 'custom_id' 'a' is used by an earlier line"):
            for chunk in chunks:
                validator.feed(chunk)
            validator.finish()


def test_batch_validator_accepts_lines_fed_byte_by_byte() -> None:
    content = b"".join(batch_line(f"req-{n}") for n in range(3))
    validator = BatchLineValidator(max_line_bytes=MIB)
    for n in range(len(content)):
        validator.feed(content[n : n + 1])
    validator.finish()
    assert validator.line_number == 3
    assert validator.custom_ids == {"req-0", "req-1", "req-2"}


def test_batch_validator_errors_name_the_file_param_and_batch_code() -> None:
    validator = BatchLineValidator(max_line_bytes=MIB)
    error = error_of(lambda: validator.feed(b"{}\n"))
    assert (error.status_code, error.param, error.code) == (400, "file", "invalid_batch_file")
    assert error.message == "Invalid batch file: line 1: 'custom_id' must be a non-empty string."


@pytest.mark.parametrize("where", ["first", "later"])
def test_batch_validator_refuses_a_byte_order_mark_on_any_line(where: str) -> None:
    content = BOM + batch_line("a") + batch_line("b") if where == "first" else batch_line("a") + BOM + batch_line("b")
    validator = BatchLineValidator(max_line_bytes=MIB)
    error = error_of(lambda: validator.feed(content))
    assert error.message.startswith(f"Invalid batch file: line {1 if where == 'first' else 2}: the line starts with")


def test_batch_validator_refuses_a_line_over_its_cap_before_it_ends() -> None:
    validator = BatchLineValidator(max_line_bytes=200)
    validator.feed(batch_line("a"))
    with pytest.raises(InvalidRequest, match="line 2: the line is longer than 200 bytes"):
        validator.feed(b'{"custom_id": "' + b"b" * 200)


# Rewriting while streaming, for every rewriter.


@pytest.mark.parametrize("kind", REWRITERS)
def test_rewriting_gives_the_same_file_at_every_chunk_boundary(kind: str) -> None:
    content = chat_line("a").replace(b"\n", b"\r\n") + chat_line("b") + chat_line("c").rstrip(b"\n")
    expected = b"".join(rewrite_lines([content], REWRITERS[kind](), max_line_bytes=MIB))
    assert expected.count(b"\n") == 3 and expected.endswith(b"\n")
    for chunks in splits(content):
        assert b"".join(rewrite_lines(chunks, REWRITERS[kind](), max_line_bytes=MIB)) == expected


@pytest.mark.parametrize("kind", REWRITERS)
def test_rewriting_streams_in_chunks_of_about_a_mib(kind: str) -> None:
    lines = (chat_line(f"req-{n}") for n in range(40_000))
    source, pulled = pulling(lines)
    output = rewrite_lines(source, REWRITERS[kind](), max_line_bytes=MIB)
    first = next(output)
    assert CHUNK_SIZE <= len(first) < CHUNK_SIZE + 4096 and first.endswith(b"\n")
    assert pulled[0] < 2 * CHUNK_SIZE  # the input is read as the output is taken, not all at once
    rest = list(output)
    assert all(CHUNK_SIZE <= len(chunk) < CHUNK_SIZE + 4096 for chunk in rest[:-1])
    assert sum(chunk.count(b"\n") for chunk in [first, *rest]) == 40_000


@pytest.mark.parametrize("kind", REWRITERS)
@pytest.mark.parametrize("where", ["first", "later"])
def test_rewriting_refuses_a_byte_order_mark_on_any_line(kind: str, where: str) -> None:
    content = BOM + chat_line("a") + chat_line("b") if where == "first" else chat_line("a") + BOM + chat_line("b")
    error = error_of(lambda: list(rewrite_lines([content], REWRITERS[kind](), max_line_bytes=MIB)))
    number = 1 if where == "first" else 2
    assert error.message == (
        f"Invalid batch file: line {number}: the line starts with a UTF-8 byte order mark; "
        "save the file as UTF-8 without a byte order mark."
    )


@pytest.mark.parametrize("kind", REWRITERS)
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (chat_line("a") + chat_line("a"), "line 2: 'custom_id' 'a' is used by an earlier line"),
        (chat_line("a") + b'{"custom_id": "b", "method": "GET"}\n', "line 2: 'method' must be \"POST\""),
        (chat_line("a") + b'{"unknown": 1}\n', "line 2: 'custom_id' must be a non-empty string"),
        (chat_line("a") + b"[" * 90 + b"]" * 90, "line 2: the line is nested deeper than 64 levels"),
        (chat_line("a") + b'{"custom_id": "' + b"x" * 300, "line 2: the line is longer than 200 bytes"),
        (chat_line("a").replace(b'"hi"', b'"\\ud800"'), "line 1: the line holds an unpaired UTF-16 surrogate"),
        (chat_line("a") + b"\n" + chat_line("b"), "line 2: the line is empty"),
        (b"  ", "line 1: the file has no request lines"),
    ],
    ids=["duplicate-id", "openai-rule", "not-openai-nor-native", "deep", "long", "surrogate", "empty", "no-lines"],
)
def test_rewriting_refuses_what_validation_refuses(kind: str, content: bytes, message: str) -> None:
    error = error_of(lambda: list(rewrite_lines([content], REWRITERS[kind](), max_line_bytes=200)))
    assert error.message.startswith(f"Invalid batch file: {message}")
