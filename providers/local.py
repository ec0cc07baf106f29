"""``local``: files in a folder on this machine. The embedded default; needs no credentials."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage

from config.errors import FileNotFound, UpstreamError, UpstreamUnavailable
from providers.base import CHUNK_SIZE, ByteCounter, Content, ObjectStoreProvider, StoredObject
from providers.fields import Field
from providers.stores import ClosingChunks, checked_key, checked_prefix, probe

FILE_MODE = 0o600
FOLDER_MODE = 0o700


class ChunkFile(File):
    """A Django ``File`` whose ``chunks()`` are the upload's chunks as they arrive (read once, no copy)."""

    def __init__(self, chunks: Iterable[bytes], name: str) -> None:
        super().__init__(None, name)
        self._chunks = chunks

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return iter(self._chunks)


class FolderStore:
    """Objects as files under ``root``, through Django's ``FileSystemStorage``. Implements ``providers.base.Store``.

    Calls: ``FileSystemStorage.save`` (it creates missing folders 0700, writes the chunks to a file
    opened with ``O_EXCL`` under an exclusive lock, then sets it 0600), ``open``, ``exists``,
    ``path`` and ``delete``; listing walks the folders with ``os.scandir`` so symbolic links are
    never followed. ``check`` writes, reads back and deletes a probe file.

    Measured against the hand-written writer it replaced (a temporary name, then a rename) in one
    run: 256 MiB in 1 MiB chunks, the two alternating, 7 saves each, to an ext4 disk (page cache,
    no fsync in either). FileSystemStorage: best 0.049 s wall / 0.049 s CPU, median 0.051-0.055 s;
    hand-written: best 0.048 s / 0.048 s, median 0.050-0.051 s. Within a millisecond of each other
    (about 5 GB/s both): no measurable cost, so Django's storage it is.

    What that costs in behaviour, and how it is handled:

    - FileSystemStorage writes under the final name. A failed or refused save deletes the partial
      file before the error comes out, so nothing is left; while a save runs, its file is visible
      to ``iter_objects`` (but to no client: no record names it yet).
    - It creates the file with the process umask and sets 0600 once written; the folders it
      creates are 0700 from the start, so no other user can reach the file in between.
    - A name already taken would be saved under another name: keys are minted ids, so that never
      happens, and if it did the save is refused rather than recorded under a name we did not ask for.

    Keys can never leave ``root``: ``checked_key`` refuses ``..`` and absolute keys,
    FileSystemStorage refuses paths outside its location, and paths are resolved so a symbolic
    link inside the root cannot lead out of it.
    """

    uri_scheme = "file"
    bucket = ""
    prefix = ""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = FileSystemStorage(
            location=root, file_permissions_mode=FILE_MODE, directory_permissions_mode=FOLDER_MODE
        )

    def _name(self, key: str) -> str:
        """``key`` if it stays inside the root, even through symbolic links; else ``FileNotFound``."""
        name = checked_key(key)
        try:
            path = Path(self.storage.path(name)).resolve()
        except SuspiciousFileOperation:
            raise FileNotFound("No such File object.", param="id") from None
        if not path.is_relative_to(self.root.resolve()):
            raise FileNotFound("No such File object.", param="id")
        return name

    def save(self, key: str, chunks: Iterable[bytes], *, content_type: str) -> int:
        """See ``Store.save``: the file is 0600 in 0700 folders; a failed save leaves no file."""
        name = self._name(key)
        if self.storage.exists(name):
            raise UpstreamError("The local file store already has an object under this key.")
        counter = ByteCounter(chunks)
        try:
            saved = self.storage.save(name, ChunkFile(counter, name))
        except OSError as exc:
            self._discard(name)
            raise UpstreamUnavailable(f"The local file store cannot be written: {exc.strerror}.") from exc
        except BaseException:
            self._discard(name)
            raise
        if saved != name:  # another writer took the name between the check and the save
            self._discard(saved)
            raise UpstreamError("The local file store already has an object under this key.")
        return counter.total

    def _discard(self, name: str) -> None:
        # OSError: nothing was created, or the folder is unwritable and there is nothing we could remove.
        with contextlib.suppress(OSError):
            self.storage.delete(name)

    def open(self, key: str) -> Content:
        """See ``Store.open``: ``FileNotFound`` before the first chunk if the file is missing."""
        name = self._name(key)
        try:
            handle = self.storage.open(name, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._require_root()
            raise FileNotFound("No such File object.", param="id") from None
        except OSError as exc:
            raise UpstreamUnavailable(f"The local file store cannot be read: {exc.strerror}.") from exc
        size = os.fstat(handle.fileno()).st_size
        return Content(chunks=ClosingChunks(handle.chunks(CHUNK_SIZE), handle.close), size=size)

    def delete(self, key: str) -> bool:
        """See ``Store.delete``: ``False`` if the file was already missing."""
        name = self._name(key)
        if not os.path.isfile(self.storage.path(name)):
            self._require_root()
            return False
        try:
            self.storage.delete(name)
        except OSError as exc:
            raise UpstreamUnavailable(f"The local file store cannot be written: {exc.strerror}.") from exc
        return True

    def _require_root(self) -> None:
        """``UpstreamUnavailable`` if the root folder itself is gone (an unmounted volume, say): its
        files are not missing but out of reach, and must not be forgotten or reported deleted."""
        if not self.root.is_dir():
            raise UpstreamUnavailable("The local file store's folder is not there; its files cannot be reached.")

    def iter_objects(self, prefix: str) -> Iterator[StoredObject]:
        """See ``Store.iter_objects``: files (not links) whose key starts with ``prefix``, in key order."""
        folder = checked_prefix(prefix).rpartition("/")[0]
        start = self.storage.path(self._name(folder) if folder else "")
        yield from self._walk(start, folder, prefix)

    def _walk(self, path: str, folder: str, prefix: str) -> Iterator[StoredObject]:
        try:
            # A folder sorts as its name and a slash, where its files' keys sort: keys come out in order.
            entries = sorted(os.scandir(path), key=lambda entry: entry.name + "/" * entry.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise UpstreamUnavailable(f"The local file store cannot be read: {exc.strerror}.") from exc
        for entry in entries:
            key = f"{folder}/{entry.name}" if folder else entry.name
            if entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                stat = entry.stat(follow_symlinks=False)
                yield StoredObject(key=key, size=stat.st_size, modified_at=stat.st_mtime)
            elif entry.is_dir(follow_symlinks=False) and (key + "/").startswith(prefix[: len(key) + 1]):
                yield from self._walk(entry.path, key, prefix)

    def check(self) -> None:
        """See ``Store.check``."""
        probe(self)


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
