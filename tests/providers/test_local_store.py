"""``FolderStore`` (Django's ``FileSystemStorage``) and the ``local`` kind on it: modes, partial files,
confinement and failures of the disk.

The contract every store keeps (bytes, open, delete, refused saves, 200 MiB in bounded memory) is
in ``test_stores.py``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.errors import FileNotFound, PayloadTooLarge, UpstreamError, UpstreamUnavailable
from providers.local import FolderStore
from providers.stores import PART_SIZE
from tests.conftest import Tenant, upload
from tests.object_stores import MIB, collect_failed_call, numbered_bytes, numbered_chunks, refused_after


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data" / "files"


def test_files_are_created_0600_in_folders_created_0700(root: Path) -> None:
    FolderStore(root).save("org-a/2026/file-1", iter([b"secret"]), content_type="text/plain")
    assert mode(root / "org-a" / "2026" / "file-1") == 0o600
    assert [mode(folder) for folder in (root.parent, root, root / "org-a", root / "org-a" / "2026")] == [0o700] * 4


def test_while_a_file_is_written_only_its_owner_can_reach_it(root: Path) -> None:
    """FileSystemStorage sets 0600 once the file is whole; until then the 0700 folder keeps others out."""
    seen: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield b"first"
        partial = root / "org-a" / "file-1"
        seen.append(mode(partial.parent))
        yield b"second"

    FolderStore(root).save("org-a/file-1", chunks(), content_type="text/plain")
    assert seen == [0o700]


def test_a_refused_save_removes_the_partial_file_it_had_written(root: Path) -> None:
    store = FolderStore(root)
    partial_sizes: list[int] = []
    refusal = PayloadTooLarge("too large", param="file")

    def look() -> None:
        partial_sizes.append((root / "org-a" / "file-cut").stat().st_size)

    with pytest.raises(PayloadTooLarge) as raised:
        store.save("org-a/file-cut", refused_after(numbered_chunks(8 * MIB), 3 * MIB, refusal, look), content_type="")
    assert raised.value is refusal
    assert partial_sizes and partial_sizes[0] > 0  # FileSystemStorage writes under the final name
    collect_failed_call(refusal)
    assert [path for path in root.rglob("*") if path.is_file()] == []


def test_a_disk_that_cannot_be_written_is_unavailable_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "files"
    blocker.write_bytes(b"a file where the store's folder should be")
    store = FolderStore(blocker)
    with pytest.raises(UpstreamUnavailable, match="cannot be written"):
        store.save("org-a/file-1", iter([b"x"]), content_type="text/plain")
    with pytest.raises(UpstreamUnavailable):
        store.check()
    assert blocker.read_bytes() == b"a file where the store's folder should be"


def test_a_key_already_taken_is_refused_and_the_file_kept(root: Path) -> None:
    store = FolderStore(root)
    store.save("org-a/file-1", iter([b"first"]), content_type="text/plain")
    with pytest.raises(UpstreamError, match="already has an object"):
        store.save("org-a/file-1", iter([b"second"]), content_type="text/plain")
    assert (root / "org-a" / "file-1").read_bytes() == b"first"
    assert sorted(path.name for path in (root / "org-a").iterdir()) == ["file-1"]


def test_a_symbolic_link_cannot_lead_out_of_the_root(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"not the gateway's")
    store = FolderStore(root)
    store.save("org-a/file-1", iter([b"mine"]), content_type="text/plain")
    (root / "org-a" / "link").symlink_to(outside, target_is_directory=True)
    (root / "org-a" / "file-link").symlink_to(outside / "secret")
    for key in ("org-a/link/secret", "org-a/file-link"):
        with pytest.raises(FileNotFound):
            store.open(key)
        with pytest.raises(FileNotFound):
            store.delete(key)
    with pytest.raises(FileNotFound):
        store.save("org-a/link/new", iter([b"x"]), content_type="text/plain")
    assert [item.key for item in store.iter_objects("")] == ["org-a/file-1"]
    assert (outside / "secret").read_bytes() == b"not the gateway's"
    assert sorted(path.name for path in outside.iterdir()) == ["secret"]


def test_closing_a_download_before_reading_releases_the_file(root: Path) -> None:
    store = FolderStore(root)
    store.save("org-a/file-1", numbered_chunks(2 * MIB), content_type="text/plain")
    before = len(os.listdir("/proc/self/fd"))
    content = store.open("org-a/file-1")
    assert len(os.listdir("/proc/self/fd")) == before + 1
    content.chunks.close()  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_download_streams_the_file_as_written(root: Path) -> None:
    store = FolderStore(root)
    store.save("org-a/file-1", numbered_chunks(PART_SIZE + 3), content_type="text/plain")
    content = store.open("org-a/file-1")
    assert content.size == PART_SIZE + 3
    assert b"".join(content.chunks) == numbered_bytes(PART_SIZE + 3)


@pytest.mark.django_db
def test_the_local_kind_stores_through_the_folder_store_and_serves_content_length(
    tenant_a: Tenant, data_dir: Path
) -> None:
    created = upload(tenant_a.client, b"hello local")
    assert created.status_code == 200, created.json()
    file_id = created.json()["id"]
    stored = data_dir / "files" / "org-a" / file_id
    assert (stored.read_bytes(), mode(stored), mode(stored.parent)) == (b"hello local", 0o600, 0o700)
    response = tenant_a.client.get(f"/v1/files/{file_id}/content")
    assert response["Content-Length"] == "11"
    assert b"".join(response.streaming_content) == b"hello local"
    assert tenant_a.client.delete(f"/v1/files/{file_id}").json()["deleted"] is True
    assert not stored.exists()
