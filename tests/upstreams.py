"""Fake OpenAI and Azure OpenAI Files APIs: real HTTP servers on 127.0.0.1, started by the tests.

Every JSON answer is validated with the official ``openai`` SDK's pydantic types before it is sent
(OpenAI's file object widens ``purpose`` by ``evals``, see ``OpenAIFileObject``; Azure's widens
``status`` to Azure's own states, see ``AzureFileObject``). Uploads are
parsed while they stream, chunked or not: the file's bytes go to a folder and only their size and
sha256 stay in memory, so a 256 MiB upload costs the fake one buffer. An upload that does not end
with its closing boundary and a complete body is discarded, as a real upstream would.

Faults are injected per operation with ``server.fail(operation, ...)``: an HTTP status, a hang
(for timeouts) or a connection reset after some bytes of the body (upload) or answer (content).
The machinery is shared with the Anthropic and Groq fakes (``tests/upstream_server.py``).
Registered as a pytest plugin by ``tests/conftest.py``; the fixtures are at the bottom, with
``add_upstream_account``, which makes an account on any of the fakes.
"""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from openai.pagination import SyncCursorPage
from openai.types import FileDeleted, FileObject
from openai.types.shared import ErrorObject

from providers.http import PassThroughProvider
from tenants.models import ProviderAccount
from tenants.services import provider_account_create
from tests.upstream_server import ApiError, FakeHandler, FakeServer, Fault, ReceivedRequest, StoredFile, serving


class OpenAIFileObject(FileObject):
    """OpenAI's file object with ``evals`` among its purposes: the API takes ``evals`` on upload (the
    SDK's ``FilePurpose``), and the file keeps the purpose it was uploaded with; the SDK's object type
    predates that purpose."""

    purpose: Literal[  # type: ignore[assignment]
        "assistants",
        "assistants_output",
        "batch",
        "batch_output",
        "fine-tune",
        "fine-tune-results",
        "vision",
        "user_data",
        "evals",
    ]


class AzureFileObject(FileObject):
    """Azure's file object: OpenAI's, with Azure's ``FileState`` values (it answers ``pending``)."""

    status: Literal["uploaded", "pending", "running", "processed", "error", "deleting", "deleted"]  # type: ignore[assignment]


def openai_file(file_id: str, size: int, created: float, filename: str, purpose: str) -> dict[str, Any]:
    """The fields of OpenAI's file object that OpenAI-compatible APIs (Azure, Groq) all have."""
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(created),
        "filename": filename,
        "purpose": purpose,
    }


class OpenAIHandler(FakeHandler):
    fake: FakeFilesServer

    def refusal(self, request: ReceivedRequest) -> ApiError | None:
        if not self._is_authorized(request.headers):
            key = request.headers.get("api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
            shown = f"{key[:6]}***{key[-4:]}" if len(key) > 10 else key
            return ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key in your account settings.",
                code="invalid_api_key",
            )
        expected_version = [] if self.fake.api_version == "v1" else [self.fake.api_version]
        if self.fake.flavor == "azure" and request.query.get("api-version", []) != expected_version:
            return ApiError(400, "Missing or unsupported api-version query parameter.", param="api-version")
        return None

    def _is_authorized(self, headers: dict[str, str]) -> bool:
        if self.fake.flavor == "azure":
            return headers.get("api-key") == self.fake.api_key
        return headers.get("authorization") == f"Bearer {self.fake.api_key}"

    def send_api_error(self, error: ApiError) -> None:
        error_type = "invalid_request_error" if error.status < 500 else "server_error"
        code = "rate_limit_exceeded" if error.status == 429 else error.code
        body = {"message": error.message, "type": error_type, "param": error.param, "code": code}
        ErrorObject.model_validate(body)
        self.send_json(error.status, {"error": body}, error.headers)

    def not_found(self, file_id: str) -> ApiError:
        return ApiError(404, f"No such File object: {file_id}", param="id")

    # Operations.

    def upload(self, request: ReceivedRequest, fault: Fault | None) -> None:
        received = self.receive_multipart(request, fault)
        fields = received.fields
        if not received.file_field or "purpose" not in fields:
            received.path.unlink(missing_ok=True)
            return self.send_api_error(ApiError(400, "Missing required parameter: 'file' or 'purpose'.", param="file"))
        extra = {}
        if "expires_after[seconds]" in fields:
            extra["expires_at"] = int(time.time()) + int(fields["expires_after[seconds]"])
        status = "pending" if self.fake.flavor == "azure" else "processed"
        obj = self.fake.register(
            received.path,
            received.sha256,
            received.size,
            time.time(),
            filename=received.filename,
            purpose=fields["purpose"],
            status=status,
            **extra,
        )
        if self.fake.flavor == "azure":
            # Azure: 201 Created with a Location header (learn.microsoft.com .../files/upload).
            location = {"Location": f"{self.fake.url}{self.fake.prefix}/{obj['id']}"}
            return self.answer(201, obj, self.fake.file_model(), headers=location)
        return self.answer(200, obj, self.fake.file_model())

    def list_files(self, request: ReceivedRequest) -> None:
        query = request.query
        purpose = query.get("purpose", [None])[0]
        limit = int(query.get("limit", ["10000"])[0])
        after = query.get("after", [None])[0]
        files = self.fake.ordered(newest_first=query.get("order", ["desc"])[0] == "desc")
        items = [f.object for f in files if purpose is None or f.object["purpose"] == purpose]
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        page = items[:limit]
        body = {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
        self.answer(200, body, SyncCursorPage[self.fake.file_model()])  # type: ignore[index]

    def retrieve(self, stored: StoredFile) -> None:
        if stored.object["status"] == "pending":
            stored.object["status"] = "processed"  # Azure has finished processing by the first look
        self.answer(200, stored.object, self.fake.file_model())

    def content(self, stored: StoredFile, fault: Fault | None) -> None:
        self.stream_file(stored, stored.object["bytes"], "application/octet-stream", fault)

    def delete(self, file_id: str, stored: StoredFile) -> None:
        self.fake.remove(file_id)
        self.answer(200, {"id": file_id, "object": "file", "deleted": True}, FileDeleted)

    def fault_message(self, status: int) -> str:
        return "The server had an error while processing your request."


class FakeFilesServer(FakeServer):
    """An OpenAI-style (``flavor="openai"``) or Azure-style (``flavor="azure"``) Files API."""

    handler = OpenAIHandler

    def __init__(self, root: Path, *, flavor: str, api_key: str, api_version: str = "2024-10-21") -> None:
        super().__init__(root, api_key=api_key)
        self.flavor = flavor
        self.kind = "openai" if flavor == "openai" else "azure_openai"
        # Azure only: a dated version goes in ?api-version=; "v1" is the newer /openai/v1 surface without it.
        self.api_version = api_version
        self.prefix = {"openai": "/v1/files", "azure": "/openai/files"}[flavor]
        if flavor == "azure" and api_version == "v1":
            self.prefix = "/openai/v1/files"

    @property
    def url(self) -> str:
        """The ``base_url`` an account of this flavor is configured with."""
        return f"{self.origin}/v1" if self.flavor == "openai" else self.origin

    def account_config(self, **overrides: Any) -> dict[str, Any]:
        if self.flavor == "openai":
            overrides = {"organization": OPENAI_ORG, "project": OPENAI_PROJECT, **overrides}
        return super().account_config(**overrides)

    def new_id(self) -> str:
        if self.flavor == "azure":
            return "file-" + secrets.token_hex(16)
        return "file-" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(22))

    def file_object(
        self,
        file_id: str,
        *,
        size: int,
        created: float,
        filename: str = "outside.txt",
        purpose: str = "assistants",
        status: str = "processed",
        **extra: Any,
    ) -> dict[str, Any]:
        return {**openai_file(file_id, size, created, filename, purpose), "status": status, **extra}

    def file_model(self) -> type[FileObject]:
        return AzureFileObject if self.flavor == "azure" else OpenAIFileObject


# Fixtures.

OPENAI_KEY = "sk-upstream-0123456789abcdefXYZ"
AZURE_KEY = "0123456789abcdef0123456789abcdef"
OPENAI_ORG = "org-UpstreamOrg123"
OPENAI_PROJECT = "proj_UpstreamProject123"


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the retry backoff short so fault tests stay fast."""
    monkeypatch.setattr(PassThroughProvider, "retry_backoff_seconds", 0.01)


@pytest.fixture
def fake_openai(tmp_path: Path, fast_retries: None) -> Iterator[FakeFilesServer]:
    yield from serving(FakeFilesServer(tmp_path / "fake-openai", flavor="openai", api_key=OPENAI_KEY))


@pytest.fixture
def fake_azure(tmp_path: Path, fast_retries: None) -> Iterator[FakeFilesServer]:
    yield from serving(FakeFilesServer(tmp_path / "fake-azure", flavor="azure", api_key=AZURE_KEY))


def openai_config(server: FakeFilesServer, **overrides: Any) -> dict[str, Any]:
    return server.account_config(**overrides)


def azure_config(server: FakeFilesServer, **overrides: Any) -> dict[str, Any]:
    return server.account_config(**overrides)


def add_upstream_account(
    tenant: Any, server: FakeServer, *, name: str | None = None, **overrides: Any
) -> ProviderAccount:
    """A provider account of ``tenant`` on any fake (of the fake's kind), named after the kind unless ``name`` is given.

    ``overrides`` change or add settings (``timeout=...``, a wrong ``api_key``). The kind must be
    registered in ``providers.registry.PROVIDERS``, or this raises ``InvalidRequest``.
    """
    return provider_account_create(
        organization=tenant.org,
        name=name or server.kind.replace("_", "-"),
        kind=server.kind,
        config=server.account_config(**overrides),
    )
