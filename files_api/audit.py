"""The audit trail: one ``AuditEvent`` per operation that changes or reads content, failures included.

``audited`` wraps an operation: the block calls ``succeed()`` (inside the transaction that makes the
change, so the change and its event land together), and any exception that escapes the block is
recorded as a failure, saying what the client was told, before it propagates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from config.errors import InternalError, to_gateway_error
from files_api.models import AuditEvent
from tenants.models import ApiKey, Organization, ProviderAccount

MAX_FILE_ID_LENGTH = 64  # AuditEvent.file_id


@dataclass
class Audit:
    """One operation's event, written once: by ``succeed`` or, if the operation fails, by ``audited``."""

    organization: Organization
    api_key: ApiKey | None
    action: str
    file_id: str = ""
    account: ProviderAccount | None = None
    is_written: bool = False

    def succeed(self, *, nbytes: int | None = None, file_id: str | None = None) -> None:
        self._write(outcome="success", detail="", nbytes=nbytes, file_id=file_id)

    def fail(self, error: BaseException) -> None:
        # What the client was told (a DRF ValidationError becomes its InvalidRequest); a bug keeps its class name.
        gateway_error = to_gateway_error(error)
        unexpected = isinstance(gateway_error, InternalError) and gateway_error is not error
        outcome = type(error).__name__ if unexpected else (gateway_error.code or type(gateway_error).__name__)
        detail = "unexpected error" if unexpected else gateway_error.message
        self._write(outcome=outcome, detail=detail, nbytes=None, file_id=None)

    def rolled_back(self) -> None:
        """The transaction that wrote the success event rolled back: it was never written, and a
        failure escaping ``audited`` is recorded instead."""
        self.is_written = False

    def _write(self, *, outcome: str, detail: str, nbytes: int | None, file_id: str | None) -> None:
        if self.is_written:
            return
        AuditEvent.objects.create(
            organization=self.organization,
            api_key=self.api_key,
            action=self.action,
            file_id=_storable(file_id or self.file_id)[:MAX_FILE_ID_LENGTH],
            provider_account=self.account.name if self.account else "",
            bytes=nbytes,
            outcome=outcome[:64],
            detail=_storable(detail),
        )
        self.is_written = True


def _storable(text: str) -> str:
    # What a client sent may hold NUL, which PostgreSQL refuses in any text column.
    return text.replace("\x00", "\ufffd")


@contextmanager
def audited(
    *,
    organization: Organization,
    api_key: ApiKey | None,
    action: str,
    file_id: str = "",
    account: ProviderAccount | None = None,
) -> Iterator[Audit]:
    """Audit the operation in the ``with`` block: a failure escaping it is recorded, then re-raised.

    The block sets ``audit.account`` once it knows it and calls ``audit.succeed()``; a block that
    ends without either is recorded as a success when it exits.
    """
    audit = Audit(organization=organization, api_key=api_key, action=action, file_id=file_id, account=account)
    try:
        yield audit
    except Exception as exc:
        audit.fail(exc)
        raise
    audit.succeed()
