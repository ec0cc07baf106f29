"""``local``: files in a folder on this machine. The embedded default; needs no credentials."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings

from config.errors import FileNotFound, UpstreamUnavailable
from providers.base import CHUNK_SIZE, ObjectStoreProvider, UploadStream
from providers.fields import Field


class FolderStore:
    """Objects as files under ``root``. Writes go to a temporary name and are renamed when whole."""

    uri_scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys are built by the gateway from minted ids, but never trust a path join blindly.
        if not path.is_relative_to(self.root.resolve()):
            raise FileNotFound("No such File object.", param="id")
        return path

    def put(self, key: str, stream: UploadStream, *, content_type: str, size_hint: int | None) -> int:
        path = self._path(key)
        partial = path.with_name(path.name + ".part")
        size = 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "xb") as out:
                for chunk in stream:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(partial, path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise UpstreamUnavailable(f"The local file store cannot be written: {exc.strerror}.") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size

    def get(self, key: str) -> Iterator[bytes]:
        try:
            handle = open(self._path(key), "rb")  # noqa: SIM115 - the generator below closes it
        except FileNotFoundError:
            raise FileNotFound("No such File object.", param="id") from None
        return self._chunks(handle)

    @staticmethod
    def _chunks(handle: Any) -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(CHUNK_SIZE):
                yield chunk

    def remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UpstreamUnavailable(f"The local file store is not writable: {exc.strerror}.") from exc
        if not os.access(self.root, os.W_OK):
            raise UpstreamUnavailable("The local file store is not writable.")


class LocalProvider(ObjectStoreProvider):
    kind = "local"
    label = "local disk"
    fields = (
        Field(
            "path",
            "Folder",
            "Where this account's files are kept on the gateway's machine (default: DATA_DIR/files).",
            type="path",
            operator_only=True,
        ),
    )

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        self.store = FolderStore(Path(config.get("path") or settings.DATA_DIR / "files"))
