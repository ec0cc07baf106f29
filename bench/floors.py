"""What a large transfer costs before the gateway does anything: gunicorn's and the HTTP clients' floors.

``python bench/floors.py`` serves ``floors_wsgi.py`` (no Django, no gateway) with production's gunicorn
command line (``deployment.py``) and sends it 256 MiB transfers, measuring the CPU seconds per GB of
all gunicorn processes, as ``run.py`` measures the gateway's:

- upload floor: gunicorn hands the request body to the app (``POST /sink``);
- download floor: gunicorn sends a body the app makes from memory (``GET /serve``);
- relay floors: the app fetches the body from a blob server on 127.0.0.1 and passes it on, through
  httpx (what ``providers.http`` uses) and through urllib3, side by side in the same run.

A gateway figure in bench/results.md minus the matching floor is what the gateway itself spends.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import client  # noqa: E402
import deployment  # noqa: E402
from processes import HOST, BenchError, Service, free_port, sampled  # noqa: E402

MIB = 1024 * 1024
GB = 1e9
SIZE = 256 * MIB
BLOCK = b"\xa5" * MIB
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
WORK = BENCH_DIR / ".work"


def serve_blobs(port: int) -> None:
    """A blob server: ``GET /?BYTES`` answers ``BYTES`` bytes, keep-alive, one thread per connection."""

    def handle(conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            while line := reader.readline():
                size = int(line.split(b" ")[1].partition(b"?")[2] or 0)
                while reader.readline() not in (b"\r\n", b""):
                    pass
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                for offset in range(0, size, MIB):
                    conn.sendall(BLOCK if size - offset >= MIB else BLOCK[: size - offset])

    listener = socket.create_server((HOST, port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def upload(port: int, size: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=600)
    try:
        conn.putrequest("POST", "/sink")
        conn.putheader("Content-Length", str(size))
        conn.endheaders()
        for offset in range(0, size, MIB):
            conn.send(BLOCK if size - offset >= MIB else BLOCK[: size - offset])
        response = conn.getresponse()
        if response.status != 200 or int(response.read()) != size:
            raise BenchError(f"sink: {response.status}")
    finally:
        conn.close()


def measure(name: str, server_pid: int, transfer, repeats: int) -> tuple[float, float]:
    """Median CPU seconds per GB of the gunicorn tree and median MB/s over ``repeats`` transfers."""
    transfer()  # warm: imports, pools, connections
    cpu, rates = [], []
    for _ in range(repeats):
        with sampled(server_pid) as sample:
            started = time.perf_counter()
            transfer()
            seconds = time.perf_counter() - started
        cpu.append(sample.cpu_seconds / (SIZE / GB))
        rates.append(SIZE / 1e6 / seconds)
    return statistics.median(cpu), statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--blob-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.blob_server:
        serve_blobs(args.blob_server)
        return 0
    shape = deployment.Deployment()
    blob_port, port = free_port(), free_port()
    env = {**os.environ, "FLOORS_UPSTREAM": f"http://{HOST}:{blob_port}/"}
    heartbeat = ["--worker-tmp-dir", "/dev/shm"] if Path("/dev/shm").is_dir() else []
    services: list[Service] = []

    def start(name: str, command: list[str], at: int) -> Service:
        services.append(Service(name, command, env=env, port=at, cwd=BENCH_DIR, logs=WORK / "logs"))
        return services[-1]

    try:
        start("blobs", [sys.executable, __file__, "--blob-server", str(blob_port)], blob_port).wait_ready("/")
        gunicorn_args = [*shape.args("floors_wsgi:application"), *heartbeat, "--bind", f"{HOST}:{port}"]
        gunicorn = start("floors", [GUNICORN, *gunicorn_args], port)
        gunicorn.wait_ready("/healthz")
        time.sleep(0.5)

        def download(path: str):
            def run() -> None:
                result = client.download(HOST, port, f"{path}?{SIZE}", headers={})
                if result.nbytes != SIZE:
                    raise BenchError(f"{path}: {result.nbytes} bytes")

            return run

        rows = {
            "upload: gunicorn reads the body (POST /sink)": lambda: upload(port, SIZE),
            "download: gunicorn sends a body made in memory (GET /serve)": download("/serve"),
            "relay: httpx streams it from upstream, gunicorn sends it": download("/relay/httpx"),
            "relay: urllib3 streams it from upstream, gunicorn sends it": download("/relay/urllib3"),
        }
        print(
            f"gunicorn {' '.join(shape.args('floors_wsgi:application'))}; {SIZE // MIB} MiB, median of {args.repeats}"
        )
        print("| floor | CPU s/GB (gunicorn tree) | MB/s |")
        print("|---|---|---|")
        for name, transfer in rows.items():
            cpu, rate = measure(name, gunicorn.pid, transfer, args.repeats)
            print(f"| {name} | {cpu:.2f} | {rate:.0f} |", flush=True)
    finally:
        for service in reversed(services):
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
