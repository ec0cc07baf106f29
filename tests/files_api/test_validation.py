"""Every rule an upload must pass, and what a rejected upload leaves behind: nothing but an audit event."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import override_settings

from config.errors import InvalidRequest, PayloadTooLarge
from files_api.models import PURPOSES, File
from files_api.upload import FileStream, file_upload
from files_api.validation import clean_filename
from providers.base import UploadOptions
from providers.batch import BATCH_ENDPOINTS, BOM, MAX_LINE_DEPTH, BatchLineValidator
from tenants.models import Organization
from tenants.services import provider_for
from tests.conftest import (
    MULTIPART,
    Tenant,
    assert_upload_left_nothing,
    batch_line,
    multipart_body,
    post_raw,
    upload,
)

KIB = 1024
MIB = 1024 * 1024


class CountingInput(io.BytesIO):
    """A request body that records how much of it the server read."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        data = super().readline(size)
        self.bytes_read += len(data)
        return data


def set_limits(tenant: Tenant, **limits: int) -> None:
    Organization.objects.filter(pk=tenant.org.pk).update(**limits)
    for name, value in limits.items():
        setattr(tenant.org, name, value)


def batch_lines(count: int) -> bytes:
    return b"".join(batch_line(f"req-{n}") for n in range(count))


def expiry(seconds: Any, anchor: Any = "created_at") -> dict[str, Any]:
    fields = {"expires_after[anchor]": anchor, "expires_after[seconds]": seconds}
    return {name: value for name, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Rejection:
    name: str
    send: Callable[[Tenant], Any]
    status: int
    code: str | None
    param: str | None
    message: str


def _batch(content: bytes) -> Callable[[Tenant], Any]:
    return lambda t: upload(t.client, content, filename="requests.jsonl", purpose="batch")


def _oversize(limit_field: str, size: int, *, purpose: str = "assistants") -> Callable[[Tenant], Any]:
    def send(t: Tenant) -> Any:
        set_limits(t, **{limit_field: 1000})
        content = batch_lines(size // len(batch_line("req-0")) + 1) if purpose == "batch" else b"x" * size
        return upload(t.client, content, filename="big.jsonl", purpose=purpose)

    return send


def _truncated_body(t: Tenant) -> Any:
    body = multipart_body(("purpose", "assistants", None), ("file", b"y" * 5000, "cut.txt"))
    payload = CountingInput(body[:-200])  # the client went away 200 bytes early
    return post_raw(t.client, b"", CONTENT_TYPE=MULTIPART, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": payload})


def _late_fields(*fields: tuple[str, str, None], filename: str = "late.txt") -> Callable[[Tenant], Any]:
    return lambda t: post_raw(t.client, multipart_body(("file", b"late bytes\n", filename), *fields))


@override_settings(BATCH_LINE_MAX_BYTES=1000)
def _long_line(t: Tenant) -> Any:
    return upload(t.client, batch_line("a") + batch_line("b", pad="x" * 1000), filename="long.jsonl", purpose="batch")


# fmt: off
BATCH_LINE_RULES = [
    Rejection("batch_line_not_json", _batch(batch_line("a") + b"{not json\n"), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 2: the line is not valid JSON."),
    Rejection("batch_line_not_utf8", _batch(b'{"custom_id": "\xff\xfe"}\n'), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: the line is not valid UTF-8."),
    Rejection("batch_line_not_an_object", _batch(b"[1, 2]\n"), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: the line is not a JSON object."),
    Rejection("batch_line_without_custom_id",
              _batch(batch_line("a") + json.dumps({"method": "POST", "url": "/v1/embeddings", "body": {}}).encode()),
              400, "invalid_batch_file", "file",
              "Invalid batch file: line 2: 'custom_id' must be a non-empty string."),
    Rejection("batch_line_with_empty_custom_id", _batch(batch_line("")), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: 'custom_id' must be a non-empty string."),
    Rejection("batch_line_with_numeric_custom_id", _batch(batch_line(7)), 400, "invalid_batch_file", "file",  # type: ignore[arg-type]
              "Invalid batch file: line 1: 'custom_id' must be a non-empty string."),
    Rejection("batch_line_with_duplicate_custom_id", _batch(batch_line("a") + batch_line("b") + batch_line("a")),
              400, "invalid_batch_file", "file",
              "Invalid batch file: line 3: 'custom_id' 'a' is used by an earlier line."),
    Rejection("batch_line_with_method_get", _batch(batch_line("a", method="GET")), 400, "invalid_batch_file",
              "file", "Invalid batch file: line 1: 'method' must be \"POST\"."),
    Rejection("batch_line_with_unknown_url", _batch(batch_line("a") + batch_line("b", url="/v1/files")), 400,
              "invalid_batch_file", "file", "Invalid batch file: line 2: 'url' must be one of /v1/chat/completions"),
    Rejection("batch_line_with_string_body", _batch(batch_line("a", body="hi")), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: 'body' must be a JSON object."),
    Rejection("batch_line_without_body",
              _batch(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/embeddings"}).encode() + b"\n"),
              400, "invalid_batch_file", "file", "Invalid batch file: line 1: 'body' must be a JSON object."),
    Rejection("batch_blank_line_between_requests", _batch(batch_line("a") + b"\n" + batch_line("b")), 400,
              "invalid_batch_file", "file", "Invalid batch file: line 2: the line is empty."),
    Rejection("batch_file_without_lines", _batch(b"   "), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: the file has no request lines."),
    Rejection("batch_first_line_with_bom", _batch(BOM + batch_line("a")), 400, "invalid_batch_file", "file",
              "Invalid batch file: line 1: the line starts with a UTF-8 byte order mark; save the file as UTF-8 "
              "without a byte order mark."),
    Rejection("batch_later_line_with_bom", _batch(batch_line("a") + BOM + batch_line("b")), 400, "invalid_batch_file",
              "file", "Invalid batch file: line 2: the line starts with a UTF-8 byte order mark"),
    Rejection("batch_line_nested_200000_deep", _batch(batch_line("a") + b"[" * 200_000 + b"]" * 200_000 + b"\n"),
              400, "invalid_batch_file", "file",
              f"Invalid batch file: line 2: the line is nested deeper than {MAX_LINE_DEPTH} levels."),
    Rejection("batch_line_longer_than_the_cap", _long_line, 400, "invalid_batch_file", "file",
              "Invalid batch file: line 2: the line is longer than 1000 bytes."),
    Rejection("batch_last_line_without_newline_invalid", _batch(batch_line("a") + b'{"custom_id": "b"}'), 400,
              "invalid_batch_file", "file", "Invalid batch file: line 2: 'method' must be \"POST\"."),
]

REJECTIONS = [
    Rejection("purpose_missing", lambda t: upload(t.client, purpose=None), 400, None, "purpose",
              "Missing required parameter: 'purpose'."),
    Rejection("purpose_invalid", lambda t: upload(t.client, purpose="training"), 400, None, "purpose",
              "Invalid value for 'purpose': 'training'. Expected one of assistants, batch, fine-tune, vision, "
              "user_data, evals."),
    Rejection("purpose_invalid_after_the_file", _late_fields(("purpose", "training", None)), 400, None, "purpose",
              "Invalid value for 'purpose': 'training'."),
    Rejection("batch_not_jsonl", lambda t: upload(t.client, batch_line(), filename="requests.json", purpose="batch"),
              400, "invalid_file_type", "file", "Batch files must be .jsonl files."),
    Rejection("batch_not_jsonl_purpose_after_the_file", _late_fields(("purpose", "batch", None), filename="a.txt"),
              400, "invalid_file_type", "file", "Batch files must be .jsonl files."),
    Rejection("batch_over_org_limit_by_content_length", _oversize("batch_max_size_bytes", 100 * KIB, purpose="batch"),
              413, "file_too_large", "file", "Batch files may be at most 1000 bytes for this organization."),
    Rejection("batch_over_org_limit_mid_stream", _oversize("batch_max_size_bytes", 2000, purpose="batch"),
              413, "file_too_large", "file", "Batch files may be at most 1000 bytes for this organization."),
    Rejection("file_over_org_max_by_content_length", _oversize("max_file_size_bytes", 100 * KIB), 413,
              "file_too_large", "file", "Files may be at most 1000 bytes for this organization."),
    Rejection("file_over_org_max_mid_stream", _oversize("max_file_size_bytes", 1001), 413, "file_too_large", "file",
              "Files may be at most 1000 bytes for this organization."),
    *BATCH_LINE_RULES,
    Rejection("batch_line_invalid_purpose_after_the_file",
              lambda t: post_raw(t.client, multipart_body(("file", batch_line("a") + batch_line("a"), "r.jsonl"),
                                                          ("purpose", "batch", None))),
              400, "invalid_batch_file", "file", "Invalid batch file: line 2: 'custom_id' 'a' is used"),
    Rejection("expires_seconds_below_minimum", lambda t: upload(t.client, **expiry("3599")), 400, None,
              "expires_after[seconds]", "Invalid value for 'expires_after[seconds]': must be at least 3600."),
    Rejection("expires_seconds_above_maximum", lambda t: upload(t.client, **expiry("2592001")), 400, None,
              "expires_after[seconds]", "Invalid value for 'expires_after[seconds]': must be at most 2592000."),
    Rejection("expires_seconds_not_an_integer", lambda t: upload(t.client, **expiry("soon")), 400, None,
              "expires_after[seconds]", "Invalid value for 'expires_after[seconds]': expected an integer."),
    Rejection("expires_anchor_not_created_at", lambda t: upload(t.client, **expiry("3600", "last_active_at")), 400,
              None, "expires_after[anchor]",
              "Invalid value for 'expires_after[anchor]': only 'created_at' is supported."),
    Rejection("expires_anchor_without_seconds", lambda t: upload(t.client, **expiry(None)), 400, None,
              "expires_after[seconds]", "Missing required parameter: 'expires_after[seconds]'."),
    Rejection("expires_seconds_without_anchor", lambda t: upload(t.client, **expiry("3600", None)), 400, None,
              "expires_after[anchor]", "Missing required parameter: 'expires_after[anchor]'."),
    Rejection("expires_seconds_invalid_after_the_file",
              _late_fields(("purpose", "assistants", None), ("expires_after[anchor]", "created_at", None),
                           ("expires_after[seconds]", "60", None)),
              400, None, "expires_after[seconds]", "must be at least 3600."),
    Rejection("purpose_first_but_expiry_invalid_after_the_file",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", b"abc", "a.txt"),
                                                          ("expires_after[anchor]", "created_at", None),
                                                          ("expires_after[seconds]", "9999999", None))),
              400, None, "expires_after[seconds]", "must be at most 2592000."),
    Rejection("empty_file", lambda t: upload(t.client, b""), 400, "empty_file", "file", "The file is empty."),
    Rejection("empty_file_purpose_after_the_file",
              lambda t: post_raw(t.client, multipart_body(("file", b"", "e.txt"), ("purpose", "assistants", None))),
              400, "empty_file", "file", "The file is empty."),
    Rejection("file_missing",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None))),
              400, None, "file", "Missing required parameter: 'file'."),
    Rejection("file_sent_as_a_plain_field",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", "text", None))),
              400, None, "file", "Missing required parameter: 'file'."),
    Rejection("file_under_another_field_name",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None),
                                                          ("document", b"x", "a.txt"))),
              400, None, "document", "Unexpected file field 'document'; send the file as 'file'."),
    Rejection("two_files",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", b"one", "1.txt"),
                                                          ("file", b"two", "2.txt"))),
              400, None, "file", "Send exactly one file per upload."),
    Rejection("purpose_sent_twice",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", b"one", "1.txt"),
                                                          ("purpose", "batch", None))),
              400, None, "purpose", "The form field 'purpose' was sent twice."),
    Rejection("filename_nothing_left",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", b"x", ".."))),
              400, "invalid_filename", "file", "The file needs a file name."),
    Rejection("json_body", lambda t: t.client.post("/v1/files", {"purpose": "assistants"}, format="json"), 400, None,
              None, "Uploads must be sent as multipart/form-data with 'file' and 'purpose' fields."),
    Rejection("urlencoded_body",
              lambda t: post_raw(t.client, b"purpose=assistants&file=abc", "application/x-www-form-urlencoded"),
              400, None, None, "Uploads must be sent as multipart/form-data with 'file' and 'purpose' fields."),
    Rejection("multipart_without_boundary", lambda t: post_raw(t.client, b"--x--\r\n", "multipart/form-data"), 400,
              None, None, "The multipart body has no valid boundary."),
    Rejection("multipart_without_content_length",
              lambda t: post_raw(t.client, multipart_body(("purpose", "assistants", None), ("file", b"x", "a.txt")),
                                 CONTENT_LENGTH=""),
              400, "missing_content_length", None, "A Content-Length header is required for uploads."),
    Rejection("multipart_with_empty_body",
              lambda t: post_raw(t.client, b"", CONTENT_TYPE=MULTIPART, CONTENT_LENGTH="0"), 400, None, "file",
              "Missing required parameter: 'file'."),
    Rejection("body_shorter_than_content_length", _truncated_body, 400, "incomplete_body", None,
              "The request body ended before Content-Length bytes."),
    Rejection("unknown_provider_account", lambda t: upload(t.client, account="nope"), 400, "unknown_provider_account",
              "X-Provider-Account", "No provider account named 'nope' in this organization."),
]
# fmt: on


@pytest.mark.parametrize("case", REJECTIONS, ids=lambda case: case.name)
def test_it_rejects_the_upload_with_status_code_and_message(tenant_a: Tenant, case: Rejection) -> None:
    response = case.send(tenant_a)
    assert response.status_code == case.status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", case.code, case.param)
    assert case.message in error["message"]


@pytest.mark.parametrize("case", REJECTIONS, ids=lambda case: case.name)
def test_it_leaves_nothing_behind_after_a_rejected_upload(tenant_a: Tenant, case: Rejection) -> None:
    case.send(tenant_a)
    assert_upload_left_nothing(tenant_a)


@pytest.mark.parametrize("purpose", PURPOSES)
def test_it_accepts_every_openai_purpose(client_a: Any, purpose: str) -> None:
    content = batch_line() if purpose == "batch" else b"some bytes"
    response = upload(client_a, content, filename="f.jsonl", purpose=purpose)
    assert response.status_code == 200, response.json()
    assert response.json()["purpose"] == purpose


def test_it_accepts_a_batch_file_calling_every_batch_endpoint(client_a: Any) -> None:
    content = b"".join(batch_line(f"req-{n}", url=url) for n, url in enumerate(sorted(BATCH_ENDPOINTS)))
    response = upload(client_a, content, filename="all.jsonl", purpose="batch")
    assert response.status_code == 200, response.json()
    assert response.json()["bytes"] == len(content)


def test_it_accepts_a_batch_file_with_crlf_lines_and_no_final_newline(client_a: Any) -> None:
    content = batch_line("a").replace(b"\n", b"\r\n") + batch_line("b").rstrip(b"\n")
    response = upload(client_a, content, filename="crlf.jsonl", purpose="batch")
    assert response.status_code == 200, response.json()


def test_it_accepts_a_batch_file_of_exactly_the_org_batch_limit(tenant_a: Tenant) -> None:
    content = batch_lines(10)
    set_limits(tenant_a, batch_max_size_bytes=len(content))
    response = upload(tenant_a.client, content, filename="exact.jsonl", purpose="batch")
    assert response.status_code == 200, response.json()


def test_it_accepts_a_file_of_exactly_the_org_max_size(tenant_a: Tenant) -> None:
    set_limits(tenant_a, max_file_size_bytes=1000)
    response = upload(tenant_a.client, b"x" * 1000)
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize("seconds", [3600, 2592000])
def test_it_accepts_expires_after_seconds_at_the_bounds(client_a: Any, seconds: int) -> None:
    response = upload(client_a, **expiry(str(seconds)))
    assert response.status_code == 200, response.json()
    file = response.json()
    assert file["expires_at"] == file["created_at"] + seconds


def test_it_accepts_the_purpose_sent_after_the_file(client_a: Any) -> None:
    body = multipart_body(("file", b"file first\n", "first.txt"), ("purpose", "user_data", None))
    response = post_raw(client_a, body)
    assert response.status_code == 200, response.json()
    file = response.json()
    assert (file["purpose"], file["bytes"], file["filename"]) == ("user_data", 11, "first.txt")
    content = client_a.get(f"/v1/files/{file['id']}/content")
    assert b"".join(content.streaming_content) == b"file first\n"


def test_it_accepts_expires_after_sent_after_the_file(client_a: Any) -> None:
    body = multipart_body(
        ("purpose", "assistants", None),
        ("file", b"abc", "a.txt"),
        ("expires_after[anchor]", "created_at", None),
        ("expires_after[seconds]", "7200", None),
    )
    response = post_raw(client_a, body)
    assert response.status_code == 200, response.json()
    assert response.json()["expires_at"] == response.json()["created_at"] + 7200


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\win.ini", "win.ini"),
        ("/abs/path/report.pdf", "report.pdf"),
        ("bell\x07and\x1bescape.txt", "bellandescape.txt"),
        ("tab\tname.txt", "tabname.txt"),
        ("  padded.txt  ", "padded.txt"),
        ("résumé final.txt", "résumé final.txt"),
    ],
)
def test_it_sanitises_the_filename(client_a: Any, sent: str, kept: str) -> None:
    body = multipart_body(("purpose", "assistants", None), ("file", b"x", sent))
    response = post_raw(client_a, body)
    assert response.status_code == 200, response.json()
    assert response.json()["filename"] == kept


def test_it_removes_control_characters_sent_encoded_in_the_filename(client_a: Any) -> None:
    body = multipart_body(("purpose", "assistants", None), ("file", b"x", "ignored.txt")).replace(
        b'filename="ignored.txt"', b"filename*=UTF-8''evil%0D%0Aname%00.txt"
    )
    response = post_raw(client_a, body)
    assert response.status_code == 200, response.json()
    assert response.json()["filename"] == "evilname.txt"


def test_it_truncates_a_long_filename_keeping_the_extension(client_a: Any) -> None:
    body = multipart_body(("purpose", "batch", None), ("file", batch_line(), "a" * 300 + ".jsonl"))
    response = post_raw(client_a, body)
    assert response.status_code == 200, response.json()
    filename = response.json()["filename"]
    assert len(filename) == 255
    assert filename == "a" * 249 + ".jsonl"


def test_it_refuses_an_oversize_content_length_before_reading_the_body(tenant_a: Tenant) -> None:
    set_limits(tenant_a, max_file_size_bytes=1000)
    body = multipart_body(("purpose", "assistants", None), ("file", b"z" * 200 * KIB, "big.bin"))
    payload = CountingInput(body)
    response = post_raw(
        tenant_a.client, b"", CONTENT_TYPE=MULTIPART, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": payload}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    assert payload.bytes_read == 0


def test_it_stops_reading_once_a_lying_content_length_is_crossed(tenant_a: Tenant) -> None:
    set_limits(tenant_a, max_file_size_bytes=MIB)
    body = multipart_body(("purpose", "assistants", None), ("file", b"z" * 16 * MIB, "big.bin"))
    raw = CountingInput(body)
    with pytest.raises(PayloadTooLarge) as raised:
        file_upload(api_key=tenant_a.api_key, account_name=None, body=raw, content_type=MULTIPART, content_length=1000)
    assert raised.value.code == "file_too_large"
    assert raw.bytes_read < 4 * MIB
    assert not File.objects.exists()
    tenant_a.org.refresh_from_db()
    assert (tenant_a.org.used_bytes, tenant_a.org.reserved_bytes) == (0, 0)


def counted(chunks: Iterator[bytes]) -> tuple[Iterator[bytes], list[int]]:
    pulled = [0]

    def source() -> Iterator[bytes]:
        for chunk in chunks:
            pulled[0] += 1
            yield chunk

    return source(), pulled


def test_filestream_raises_on_the_chunk_that_crosses_the_limit_and_reads_no_further() -> None:
    source, pulled = counted(itertools.repeat(b"abcd"))
    stream = FileStream(source, max_bytes=10, too_large_message="too big")
    with pytest.raises(PayloadTooLarge, match="too big"):
        list(stream)
    assert pulled == [3]
    assert stream.bytes_read == 12


def test_filestream_read_stops_at_the_limit_too() -> None:
    source, pulled = counted(itertools.repeat(b"x" * 1000))
    stream = FileStream(source, max_bytes=2500, too_large_message="too big")
    assert len(stream.read(2000)) == 2000
    with pytest.raises(PayloadTooLarge):
        stream.read(2000)
    assert pulled == [3]


def test_filestream_accepts_exactly_max_bytes_and_hashes_what_passed() -> None:
    chunks = [b"ab", b"", b"cd", b"e"]
    stream = FileStream(iter(chunks), max_bytes=5, too_large_message="too big")
    assert b"".join(stream) == b"abcde"
    assert stream.bytes_read == 5
    assert stream.sha256 == hashlib.sha256(b"abcde").hexdigest()


def test_filestream_read_returns_at_most_size_and_keeps_the_rest_for_iteration() -> None:
    stream = FileStream(iter([b"hello ", b"world"]), max_bytes=100, too_large_message="too big")
    assert stream.read(3) == b"hel"
    assert stream.read(4) == b"lo w"
    assert list(stream) == [b"orld"]
    assert stream.read(10) == b""


def doubled(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """A transform whose output is twice its input (as a rewrite that grows)."""
    for chunk in chunks:
        yield chunk + chunk


def test_filestream_refuses_a_transform_whose_output_crosses_the_limit_as_it_crosses() -> None:
    source, pulled = counted(iter([b"x" * 400] * 5))  # 2,000 bytes sent: within the limit
    stream = FileStream(source, max_bytes=2500, too_large_message="too big.", transform=doubled)
    with pytest.raises(
        PayloadTooLarge, match=r"^too big\. As rewritten for the provider, this file grows past that\.$"
    ):
        list(stream)
    assert pulled == [4]  # output 3,200 bytes after the 4th chunk: the 5th was never read
    assert (stream.bytes_read, stream.bytes_stored) == (1600, 3200)


def test_filestream_counts_and_hashes_what_the_transform_yields() -> None:
    stream = FileStream(iter([b"ab", b"cd"]), max_bytes=100, too_large_message="too big", transform=doubled)
    assert b"".join(stream) == b"ababcdcd"
    assert (stream.bytes_read, stream.bytes_stored) == (4, 8)
    assert stream.sha256 == hashlib.sha256(b"ababcdcd").hexdigest()


def test_filestream_ends_the_input_before_a_transform_hands_out_its_last_chunk() -> None:
    """A rewrite yields its last chunk only after the last input: ``on_end`` (the check that the body
    arrived whole) runs first, so a store never completes a file whose body was cut."""
    events: list[str] = []

    def at_the_end(chunks: Iterable[bytes]) -> Iterator[bytes]:
        yield b"".join(list(chunks))

    stream = FileStream(
        iter([b"a", b"b"]),
        max_bytes=10,
        too_large_message="too big",
        transform=at_the_end,
        on_end=lambda: events.append("end"),
    )
    for chunk in stream:
        events.append(chunk.decode())
    assert events == ["end", "ab"]


def test_filestream_refuses_an_empty_file_before_any_byte_goes_upstream() -> None:
    stream = FileStream(iter([b"", b""]), max_bytes=10, too_large_message="too big")
    with pytest.raises(InvalidRequest) as raised:
        stream.ensure_not_empty()
    assert (raised.value.code, raised.value.param) == ("empty_file", "file")


def test_filestream_keeps_the_first_chunk_it_pulled_to_check_emptiness() -> None:
    stream = FileStream(iter([b"", b"first", b"second"]), max_bytes=100, too_large_message="too big")
    stream.ensure_not_empty()
    assert b"".join(stream) == b"firstsecond"


def test_filestream_runs_on_end_and_finishes_the_validator_once_after_the_last_chunk() -> None:
    ends: list[str] = []
    stream = FileStream(
        iter([batch_line("a")]), max_bytes=10_000, too_large_message="too big", on_end=lambda: ends.append("end")
    )
    stream.validator = BatchLineValidator(max_line_bytes=MIB)
    list(stream)
    stream.drain()
    assert ends == ["end"]
    assert stream.validator.line_number == 1


def test_filestream_validates_batch_lines_as_chunks_pass() -> None:
    source, pulled = counted(iter([batch_line("a"), b"not json\n", batch_line("c"), batch_line("d")]))
    stream = FileStream(
        source, max_bytes=10_000, too_large_message="too big", validator=BatchLineValidator(max_line_bytes=MIB)
    )
    with pytest.raises(InvalidRequest, match="line 2: the line is not valid JSON"):
        list(stream)
    assert pulled == [2]


def test_filestream_drain_applies_the_limit_to_bytes_the_provider_left_unread() -> None:
    stream = FileStream(iter([b"x" * 6, b"y" * 6]), max_bytes=10, too_large_message="too big")
    assert stream.read(2) == b"xx"
    with pytest.raises(PayloadTooLarge):
        stream.drain()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ("x" * 300, "x" * 255),
        ("x" * 300 + ".tar.gz", "x" * 252 + ".gz"),
        ("x" * 250 + "." + "e" * 20, ("x" * 250 + "." + "e" * 20)[:255]),
    ],
)
def test_clean_filename(raw: str, expected: str) -> None:
    assert clean_filename(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "dir/", "\x00\x01"])
def test_clean_filename_refuses_names_with_nothing_usable(raw: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        clean_filename(raw)
    assert raised.value.code == "invalid_filename"


def test_it_streams_a_non_seekable_upload_to_disk(tenant_a: Tenant) -> None:
    chunks = (bytes([n]) * 1000 for n in range(50))
    stream = FileStream(chunks, max_bytes=MIB, too_large_message="too big")
    assert not hasattr(stream, "seek")
    remote = provider_for(tenant_a.account).upload(
        stream, UploadOptions(filename="gen.bin", purpose="assistants", namespace="org-a")
    )
    assert remote.bytes == 50_000
    assert b"".join(provider_for(tenant_a.account).open_content(remote.storage_key).chunks) == b"".join(
        bytes([n]) * 1000 for n in range(50)
    )


def test_a_purpose_sent_after_the_file_is_reserved_for_before_the_file_is_read(tenant_a: Tenant) -> None:
    # The file must be spooled until its purpose arrives; that spooling must already count against
    # the quota, so an organisation with no room is refused before a byte of the body is read.
    set_limits(tenant_a, storage_quota_bytes=MIB)
    body = multipart_body(("file", b"z" * 4 * MIB, "late.bin"), ("purpose", "assistants", None))
    payload = CountingInput(body)
    response = post_raw(
        tenant_a.client, b"", CONTENT_TYPE=MULTIPART, CONTENT_LENGTH=str(len(body)), **{"wsgi.input": payload}
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "storage_quota_exceeded"
    assert payload.bytes_read == 0
    assert_upload_left_nothing(tenant_a)


def test_a_spooled_file_is_refused_once_it_crosses_the_file_size_limit(tenant_a: Tenant) -> None:
    set_limits(tenant_a, max_file_size_bytes=MIB)
    body = multipart_body(("file", b"z" * 16 * MIB, "late.bin"), ("purpose", "assistants", None))
    raw = CountingInput(body)
    with pytest.raises(PayloadTooLarge):
        file_upload(api_key=tenant_a.api_key, account_name=None, body=raw, content_type=MULTIPART, content_length=1000)
    assert raw.bytes_read < 4 * MIB  # refused as the limit was crossed, not after spooling it all
    tenant_a.org.refresh_from_db()
    assert (tenant_a.org.used_bytes, tenant_a.org.reserved_bytes) == (0, 0)


def test_an_expiry_pair_split_around_the_file_is_honoured(tenant_a: Tenant) -> None:
    body = multipart_body(
        ("purpose", "assistants", None),
        ("expires_after[anchor]", "created_at", None),
        ("file", b"split expiry", "split.txt"),
        ("expires_after[seconds]", "7200", None),
    )
    response = post_raw(tenant_a.client, body)
    assert response.status_code == 200, response.json()
    created = response.json()
    assert created["expires_at"] - created["created_at"] == 7200


def test_half_an_expiry_pair_is_refused_and_leaves_nothing(tenant_a: Tenant) -> None:
    body = multipart_body(
        ("purpose", "assistants", None),
        ("expires_after[anchor]", "created_at", None),
        ("file", b"half an expiry", "half.txt"),
    )
    response = post_raw(tenant_a.client, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "expires_after[seconds]"
    assert_upload_left_nothing(tenant_a)
