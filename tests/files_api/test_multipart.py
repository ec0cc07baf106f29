"""The lazy multipart reader: the file part streams, and a body cut short is never a complete file."""

from __future__ import annotations

import io

import pytest

from config.errors import InvalidRequest
from files_api.multipart import MultipartForm
from files_api.upload import FileStream

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


# The scanner: delimiters found wherever the reads split them.


class Trickle(io.BytesIO):
    """A request body that hands out at most ``step`` bytes per read, like a slow socket."""

    def __init__(self, raw: bytes, step: int) -> None:
        super().__init__(raw)
        self.step = step

    def read(self, size: int | None = -1) -> bytes:
        return super().read(self.step if size is None or size < 0 else min(size, self.step))


def read_all(raw: bytes, step: int) -> tuple[dict[str, str], bytes]:
    form = MultipartForm(
        Trickle(raw, step), content_type=f"multipart/form-data; boundary={BOUNDARY}", content_length=len(raw)
    )
    part = form.read_until_file()
    assert part is not None
    content = b"".join(part.chunks)
    return form.read_remaining_fields(), content


# Contents that look like the start of a delimiter right where a read may end.
TRICKY = [b"", b"\r", b"\r\n", b"\r\n-", b"\r\n--", b"\r\n--Xy", b"--XyZ", b"a\r\n--XyYa", b"\r\n\r\n--Xy\r\n--X"]


@pytest.mark.parametrize("content", [*TRICKY, bytes(range(256)) * 3])
def test_a_delimiter_split_across_reads_at_every_offset_is_found(content):
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", content), ("late", None, b"1"))
    for step in range(1, 40):
        fields, received = read_all(raw, step)
        assert received == content, step
        assert fields == {"purpose": "assistants", "late": "1"}, step


def test_large_reads_hand_on_whole_chunks(monkeypatch):
    monkeypatch.setattr("files_api.multipart.CHUNK_SIZE", 1000)
    content = bytes(range(256)) * 40  # 10,240 bytes
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", content))
    form = form_for(raw)
    part = form.read_until_file()
    assert part is not None
    chunks = list(part.chunks)
    assert b"".join(chunks) == content and max(len(chunk) for chunk in chunks) <= 1000
    assert form.read_remaining_fields() == {"purpose": "assistants"}


def test_a_body_cut_inside_the_file_part_at_any_point_is_incomplete():
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", b"q" * 300))
    file_start = raw.index(b"q")
    for cut in range(file_start, len(raw) - len(b"--\r\n")):
        form = form_for(raw[:cut], content_length=len(raw))
        part = form.read_until_file()
        assert part is not None
        with pytest.raises(InvalidRequest) as excinfo:
            b"".join(part.chunks)
        assert excinfo.value.code == "incomplete_body", cut


def test_a_body_cut_inside_the_part_headers_is_incomplete():
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", b"q" * 300))
    form = form_for(raw[: raw.index(b"filename")], content_length=len(raw))
    with pytest.raises(InvalidRequest) as excinfo:
        form.read_until_file()
    assert excinfo.value.code == "incomplete_body"


def test_a_body_without_the_closing_dashes_still_ends_cleanly():
    raw = body(("purpose", None, b"assistants"), ("file", "a.bin", b"data"))
    raw = raw[: -len(b"--\r\n")]
    fields, content = read_all(raw, 5)
    assert content == b"data" and fields == {"purpose": "assistants"}


def test_a_preamble_and_an_epilogue_are_ignored():
    raw = b"This is a preamble.\r\n" + body(("purpose", None, b"x"), ("file", "a.bin", b"data")) + b"epilogue"
    fields, content = read_all(raw, 3)
    assert content == b"data" and fields == {"purpose": "x"}


def test_a_body_without_any_boundary_has_no_file():
    form = form_for(b"just some bytes, no parts")
    assert form.read_until_file() is None
    assert form.read_remaining_fields() == {}


def test_part_headers_longer_than_django_allows_are_refused():
    raw = body(("purpose", None, b"x"), ("file", "a" * 1100 + ".bin", b"data"))
    with pytest.raises(InvalidRequest, match="header size"):
        form_for(raw).read_until_file()


def test_a_field_longer_than_the_limit_is_refused():
    raw = body(("purpose", None, b"p" * (64 * 1024 + 1)), ("file", "a.bin", b"data"))
    with pytest.raises(InvalidRequest, match="too long"):
        form_for(raw).read_until_file()
