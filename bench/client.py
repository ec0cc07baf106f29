"""The benchmark's HTTP client, built so that it is never the bottleneck.

Uploads send the multipart framing with ``sendall`` and the file itself with ``os.sendfile`` (the
kernel copies from the page cache); downloads ``readinto`` one reused buffer; latency runs (and the
many small uploads) use asyncio with raw keep-alive connections and a minimal response parser.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

BUFFER_BYTES = 1024 * 1024
# A small request unanswered this long means a stuck server: the run fails instead of waiting on.
ANSWER_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Upload:
    seconds: float
    status: int
    body: dict


@dataclass(frozen=True)
class Download:
    seconds: float
    status: int
    nbytes: int
    crc32: int


def upload(
    host: str, port: int, path: str, file_path: Path, *, headers: dict[str, str], purpose: str = "assistants"
) -> Upload:
    """POST ``file_path`` as the SDK does (``purpose`` first, then ``file``); time until the response is read.

    An empty ``purpose`` sends the file alone (Anthropic's upload takes no other field)."""
    boundary = "bench" + secrets.token_hex(12)
    size = file_path.stat().st_size
    purpose_part = f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
    head = (
        (purpose_part if purpose else "")
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        sock = conn.sock
        sock.sendall(head)
        with open(file_path, "rb") as handle:
            sent = sock.sendfile(handle, 0, size)  # os.sendfile underneath: the kernel copies the file
        if sent != size:
            raise ConnectionError(f"sent {sent} of {size} file bytes")
        sock.sendall(tail)
        response = conn.getresponse()
        raw = response.read()
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {"raw": raw[:500].decode(errors="replace")}
    return Upload(seconds=seconds, status=response.status, body=body)


def download(host: str, port: int, path: str, *, headers: dict[str, str]) -> Download:
    """GET ``path`` into one reused buffer; time until the last byte, with a CRC-32 of the bytes."""
    buffer = bytearray(BUFFER_BYTES)
    view = memoryview(buffer)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=600)
    nbytes, crc = 0, 0
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        while count := response.readinto(buffer):
            nbytes += count
            crc = zlib.crc32(view[:count], crc)
        seconds = time.perf_counter() - started
    finally:
        conn.close()
    return Download(seconds=seconds, status=response.status, nbytes=nbytes, crc32=crc)


def request_json(host: str, port: int, method: str, path: str, *, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(host, port, timeout=120)
    try:
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def status_of(host: str, port: int, path: str) -> int:
    """The status of ``GET path`` (whatever the body: the object stores answer XML or HTML)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(BUFFER_BYTES):
            crc = zlib.crc32(chunk, crc)
    return crc


@dataclass
class LatencyRun:
    seconds: list[float]
    errors: int
    wall_seconds: float
    body_bytes: int
    answers: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # by request index, when kept

    @property
    def requests_per_second(self) -> float:
        return len(self.seconds) / self.wall_seconds if self.wall_seconds else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = None, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length is not None:
        return status, await reader.readexactly(length), close
    if not chunked:
        return status, await reader.read(), True
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(parts), close
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _exchange(host: str, port: int, requests: list[bytes], concurrency: int, keep: bool) -> LatencyRun:
    timings: list[float] = []
    errors = 0
    body_bytes = 0
    answers: dict[int, tuple[int, bytes]] = {}
    queue = enumerate(requests)

    async def worker() -> None:
        nonlocal errors, body_bytes
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for index, raw in queue:
                started = time.perf_counter()
                writer.write(raw)
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
                        status, body, close = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    # The server closed an idle keep-alive connection: reconnect and retry once.
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    started = time.perf_counter()
                    writer.write(raw)
                    async with asyncio.timeout(ANSWER_TIMEOUT_SECONDS):
                        status, body, close = await _read_response(reader)
                timings.append(time.perf_counter() - started)
                body_bytes += len(body)
                if status != 200:
                    errors += 1
                if keep:
                    answers[index] = (status, body)
                if close:
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return LatencyRun(seconds=timings, errors=errors, wall_seconds=wall, body_bytes=body_bytes, answers=answers)


def build_request(host: str, port: int, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, ready to write to a keep-alive connection."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_upload(
    host: str, port: int, path: str, *, headers: dict[str, str], filename: str, content: bytes, purpose: str
) -> bytes:
    """A small file's upload as the SDK sends it (``purpose``, then ``file``), built in memory; an
    empty ``purpose`` sends the file alone."""
    boundary = "bench" + secrets.token_hex(12)
    purpose_part = f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
    body = (
        (purpose_part if purpose else "")
        + f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    body += content + f"\r\n--{boundary}--\r\n".encode()
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return build_request(host, port, "POST", path, {**headers, **multipart}, body)


def send(host: str, port: int, requests: list[bytes], *, concurrency: int, keep_answers: bool = False) -> LatencyRun:
    """Send every request once over ``concurrency`` keep-alive connections; per-request seconds.

    ``keep_answers`` keeps each answer's status and body, by the request's index, for checking.
    """
    return asyncio.run(_exchange(host, port, requests, concurrency, keep_answers))


def latency(host: str, port: int, paths: list[str], *, headers: dict[str, str], concurrency: int) -> LatencyRun:
    """GET every path once over ``concurrency`` keep-alive connections; per-request seconds."""
    requests = [build_request(host, port, "GET", path, headers) for path in paths]
    return send(host, port, requests, concurrency=concurrency)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]
