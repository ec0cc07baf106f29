"""Compressed request bodies: an upload with a Content-Encoding is refused before anything is read.

Nothing in the gateway inflates a request (so a small body cannot grow without bound), and a body
it cannot read as sent must not be stored as if it were the file.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import pytest

from tests.conftest import Tenant, assert_upload_left_nothing, multipart_body, post_raw

BODY = multipart_body(("purpose", "assistants", None), ("file", b"hello world\n" * 100, "notes.txt"))

ENCODED = {
    "gzip": gzip.compress(BODY),
    "x-gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),
    "br": BODY,  # the gateway never decodes, so what the body really holds does not matter
    "gzip, identity": gzip.compress(BODY),
    "identity, gzip": gzip.compress(BODY),
}


def assert_refused_as_compressed(response: Any) -> None:
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": (
            "Uploads must not be compressed: send the multipart body as it is, without a Content-Encoding header."
        ),
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported_content_encoding",
    }


@pytest.mark.parametrize("encoding", list(ENCODED))
def test_an_upload_with_a_content_encoding_is_refused_and_leaves_nothing(tenant_a: Tenant, encoding: str) -> None:
    response = post_raw(tenant_a.client, ENCODED[encoding], HTTP_CONTENT_ENCODING=encoding)
    assert_refused_as_compressed(response)
    assert_upload_left_nothing(tenant_a)


def test_a_plain_body_labelled_gzip_is_not_stored_as_if_it_were_the_file(tenant_a: Tenant) -> None:
    assert_refused_as_compressed(post_raw(tenant_a.client, BODY, HTTP_CONTENT_ENCODING="gzip"))
    assert_upload_left_nothing(tenant_a)


@pytest.mark.parametrize("encoding", ["identity", "Identity", ""])
def test_identity_is_no_encoding(tenant_a: Tenant, encoding: str) -> None:
    response = post_raw(tenant_a.client, BODY, HTTP_CONTENT_ENCODING=encoding)
    assert response.status_code == 200
    assert response.json()["bytes"] == len(b"hello world\n" * 100)
