"""The lazy multipart reader: the file part streams, and a body cut short is never a complete file."""

from __future__ import annotations

import io

import pytest

from config.errors import InvalidRequest
from files_api.uploads import FileStream, MultipartForm

BOUNDARY = "XyZ"


def body(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def form_for(raw: bytes, content_length: int | None = None) -> MultipartForm:
    return MultipartForm(
        io.BytesIO(raw),
        content_type=f"multipart/form-data; boundary={BOUNDARY}",
        content_length=len(raw) if content_length is None else content_length,
    )


def test_it_reads_fields_before_the_file_then_streams_the_file():
    form = form_for(body(("purpose", None, b"batch"), ("file", "a.jsonl", b"x" * 3_000_000), ("late", None, b"1")))
    part = form.read_until_file()
    assert form.fields == {"purpose": "batch"}
    assert part is not None and part.filename == "a.jsonl"
    received = sum(len(chunk) for chunk in part.chunks)
    assert received == 3_000_000
    assert form.read_remaining_fields() == {"purpose": "batch", "late": "1"}


def test_a_body_cut_short_fails_the_file_stream_before_the_provider_sees_its_end():
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", b"y" * 2_000_000))
    cut = raw[: len(raw) // 2]
    form = form_for(cut, content_length=len(raw))
    part = form.read_until_file()
    assert part is not None

    def check() -> None:
        if form.reader.is_truncated:
            raise InvalidRequest("cut short", code="incomplete_body")

    stream = FileStream(part.chunks, max_bytes=10**9, too_large_message="big", on_end=check)
    with pytest.raises(InvalidRequest) as excinfo:
        for _ in stream:
            pass
    assert excinfo.value.code == "incomplete_body"


def test_a_complete_body_with_fields_after_a_large_file_is_not_mistaken_for_a_cut_one():
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", b"z" * 5_000_000), ("x", None, b"y" * 10))
    form = form_for(raw)
    part = form.read_until_file()
    assert part is not None
    stream = FileStream(part.chunks, max_bytes=10**9, too_large_message="big", on_end=lambda: None)
    assert sum(len(chunk) for chunk in stream) == 5_000_000
    assert not form.reader.is_truncated
    assert form.read_remaining_fields()["x"] == "y" * 10


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/json", "multipart/form-data"),
        ("multipart/form-data", "boundary"),
    ],
)
def test_it_refuses_bodies_that_are_not_multipart(content_type, message):
    with pytest.raises(InvalidRequest, match=message):
        MultipartForm(io.BytesIO(b"{}"), content_type=content_type, content_length=2)


def test_it_requires_a_content_length():
    with pytest.raises(InvalidRequest) as excinfo:
        MultipartForm(io.BytesIO(b""), content_type=f"multipart/form-data; boundary={BOUNDARY}", content_length=None)
    assert excinfo.value.code == "missing_content_length"


def test_a_second_file_is_refused():
    form = form_for(body(("purpose", None, b"assistants"), ("file", "a.txt", b"a"), ("file2", "b.txt", b"b")))
    part = form.read_until_file()
    assert part is not None
    for _ in part.chunks:
        pass
    with pytest.raises(InvalidRequest, match="exactly one file"):
        form.read_remaining_fields()


def test_file_stream_read_returns_exact_sizes_across_chunks():
    stream = FileStream(iter([b"abc", b"defgh", b"ij"]), max_bytes=100, too_large_message="big")
    assert stream.read(4) == b"abcd"
    assert stream.read(4) == b"efgh"
    assert stream.read(4) == b"ij"
    assert stream.read(4) == b""
    assert stream.bytes_read == 10
