"""The official ``openai`` Node SDK against a live gateway, for the translated kinds (Anthropic, Groq).

``tests/node/files.mjs`` uploads, walks the list with auto-pagination in both orders, retrieves,
downloads and deletes; this test checks what it saw. The SDK (pinned in ``tests/node/package.json``)
is installed from the npm registry into the git-ignored ``tests/node/node_modules`` on first use.
Skipped only where Node.js and npm are not installed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Tenant, batch_file
from tests.upstreams import add_upstream_account

NODE_DIR = Path(__file__).parent / "node"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def node_openai() -> str:
    """The ``node`` executable, with the pinned ``openai`` package installed beside the script."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed")
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["openai"]
    installed = NODE_DIR / "node_modules" / "openai" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        command = [npm, "install", "--no-audit", "--no-fund", "--no-package-lock", "--prefix", str(NODE_DIR)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"npm install failed:\n{done.stderr[-2000:]}"
    return node


def run_script(node: str, settings: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [node, str(NODE_DIR / "files.mjs"), json.dumps(settings)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("kind", ["anthropic", "groq"])
def test_the_node_sdk_cannot_tell_it_is_not_talking_to_openai(
    request: pytest.FixtureRequest, node_openai: str, live_server: Any, tenant_a: Tenant, kind: str
) -> None:
    fake = request.getfixturevalue(f"fake_{kind}")
    add_upstream_account(tenant_a, fake, name=kind)
    made_before = fake.seed(9)  # oldest first
    content = batch_file(3000) if kind == "groq" else b"%PDF-1.7\n" + bytes(range(256)) * 8
    seen = run_script(
        node_openai,
        {
            "baseURL": f"{live_server.url}/v1",
            "apiKey": tenant_a.key,
            "headers": {"X-Provider-Account": kind},
            "limit": 4,
            "purpose": "batch" if kind == "groq" else "user_data",
            "filename": "requests.jsonl" if kind == "groq" else "paper.pdf",
            "content": base64.b64encode(content).decode(),
        },
    )
    created = seen["created"]
    assert (created["object"], created["bytes"], created["status"]) == ("file", len(content), "processed")
    oldest_first = [*made_before, created["id"]]
    assert seen["desc"] == {"ids": oldest_first[::-1], "pages": 3}
    assert seen["asc"] == {"ids": oldest_first, "pages": 3}
    assert seen["retrieved"] == created
    if kind == "groq":
        assert seen["download"] == {"sha256": hashlib.sha256(content).hexdigest()}
    else:  # Anthropic keeps uploads to itself: a clear 400, not a failure
        assert seen["download"] == {"status": 400, "code": "file_not_downloadable"}
    assert seen["deleted"] == {"id": created["id"], "object": "file", "deleted": True}
    assert created["id"] not in fake.files
