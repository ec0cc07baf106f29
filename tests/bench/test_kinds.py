"""bench/kinds.py and the fake upstream: each kind's entry is an account the gateway accepts, and the
fake keeps each key's files apart, so a list shows exactly what that key uploaded."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import client
import pytest
from kinds import DEFAULT_KINDS, KINDS
from processes import HOST, Service, free_port

from providers import registry

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_entry_is_an_account_the_registry_accepts(name: str) -> None:
    kind = KINDS[name]
    settings = kind.account_settings(url="http://127.0.0.1:9", key="sk-bench")
    config = dict(value.split("=", 1) for value in settings[1::2])

    registry.split_config(kind.name, config)  # raises InvalidRequest for an unknown or malformed setting

    assert settings[::2] == ["--set"] * len(config)


def test_the_default_kinds_are_in_the_table() -> None:
    assert set(DEFAULT_KINDS) <= set(KINDS)
    assert "openai" in DEFAULT_KINDS  # issue 14's table is measured on it


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Service]:
    port = free_port()
    args = [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port)]
    service = Service("upstream", args, env={"PATH": "/usr/bin:/bin"}, port=port, cwd=ROOT, logs=tmp_path)
    try:
        service.wait_ready("/healthz")
        yield service
    finally:
        service.stop()


@pytest.mark.parametrize("name", ["openai", "azure_openai"])
def test_the_fake_keeps_each_keys_files_apart(fake: Service, name: str) -> None:
    api = KINDS[name].api
    mine, theirs = api.headers("sk-mine"), api.headers("sk-theirs")
    uploads = [
        client.build_upload(
            HOST,
            fake.port,
            api.files_path,
            headers=mine,
            filename=f"f{i}.bin",
            content=bytes([i]) * 100,
            purpose="batch",
        )
        for i in range(3)
    ]
    run = client.send(HOST, fake.port, uploads, concurrency=2, keep_answers=True)
    ids = {json.loads(body)["id"]: zlib.crc32(bytes([i]) * 100) for i, (_, body) in run.answers.items()}

    _, my_list = client.request_json(HOST, fake.port, "GET", api.files_path, headers=mine)
    _, their_list = client.request_json(HOST, fake.port, "GET", api.files_path, headers=theirs)
    _, records = client.request_json(HOST, fake.port, "GET", "/_bench/files", headers=mine)

    assert run.errors == 0
    assert sorted(item["id"] for item in my_list["data"]) == sorted(ids)
    assert their_list["data"] == []
    assert {file_id: (record["bytes"], record["crc32"]) for file_id, record in records.items()} == {
        file_id: (100, crc) for file_id, crc in ids.items()
    }
