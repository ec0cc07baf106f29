"""The benchmark: the gateway (gunicorn, DEBUG off) against direct calls to a fast fake upstream.

One run starts the fake upstream (``bench/upstream.py``) and the gateway, measures uploads, memory,
downloads, retrieve and list latency, prints one table and writes it to ``bench/results.md``. It
stops everything it started, by PID. PostgreSQL when ``DATABASE_URL`` is set, else a fresh SQLite
file under ``bench/.work/``.

    .venv/bin/python bench/run.py            # the full run (make bench), about a minute
    .venv/bin/python bench/run.py --quick    # a smoke run with small sizes, writes bench/.work/
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography.fernet import Fernet

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
sys.path.insert(0, str(BENCH_DIR))

import client  # noqa: E402
import upstream  # noqa: E402

HOST = "127.0.0.1"
MIB = 1024 * 1024
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@dataclass(frozen=True)
class Plan:
    upload_sizes: tuple[int, ...]
    repeats: int
    big_size: int  # the upload that memory is measured on, and the download
    concurrent_count: int
    concurrent_size: int
    latency_requests: int
    list_files: int
    list_requests: int
    results_path: Path


FULL = Plan(
    upload_sizes=(16 * MIB, 256 * MIB),
    repeats=3,
    big_size=256 * MIB,
    concurrent_count=8,
    concurrent_size=64 * MIB,
    latency_requests=2000,
    list_files=10_000,
    list_requests=200,
    results_path=BENCH_DIR / "results.md",
)
QUICK = Plan(
    upload_sizes=(1 * MIB, 8 * MIB),
    repeats=3,
    big_size=8 * MIB,
    concurrent_count=8,
    concurrent_size=2 * MIB,
    latency_requests=300,
    list_files=500,
    list_requests=50,
    results_path=WORK / "results-quick.md",
)


class BenchError(Exception):
    """A wrong answer (status, size, checksum): the run is invalid, whatever the timings."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


# --- processes ------------------------------------------------------------------------------------


class Service:
    """A process the benchmark started: logged to a file, stopped by its PID."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self.log_path = WORK / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                status, _ = client.request_json(HOST, self.port, "GET", path, headers={})
                if status == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer {path} within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn's master stops its own workers
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its children (gunicorn master + workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            total += proc.memory_info().rss
    return total


def tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each of its children, by PID."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    seconds = {}
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            seconds[proc.pid] = times.user + times.system
    return seconds


@dataclass
class Sample:
    baseline: int = 0
    peak: int = 0
    cpu_by_pid: dict[int, float] = field(default_factory=dict)

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_by_pid.values())

    @property
    def busiest_share(self) -> float:
        """The busiest process's part of the CPU: near 1.0 when one gunicorn worker got every connection."""
        return max(self.cpu_by_pid.values()) / self.cpu_seconds if self.cpu_seconds else 0.0


@contextmanager
def sampled(pid: int, interval: float = 0.05) -> Iterator[Sample]:
    """Sample the process tree's RSS every ``interval`` seconds while the block runs, and its CPU."""
    sample = Sample(baseline=tree_rss(pid))
    sample.peak = sample.baseline
    cpu_before = tree_cpu(pid)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            sample.peak = max(sample.peak, tree_rss(pid))

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sample
    finally:
        stop.set()
        thread.join()
        sample.peak = max(sample.peak, tree_rss(pid))
        sample.cpu_by_pid = {child: seconds - cpu_before.get(child, 0.0) for child, seconds in tree_cpu(pid).items()}


# --- set-up ---------------------------------------------------------------------------------------


def gateway_env() -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
        "CREDENTIAL_KEYS": Fernet.generate_key().decode(),  # required with DEBUG off
        "DATA_DIR": str(WORK / "data"),
        "ALLOWED_HOSTS": HOST,
        "LOG_LEVEL": "WARNING",
        # The benchmark's one key makes thousands of requests a second: limits it never reaches, so the
        # check still runs (and is measured) but refuses nothing.
        **{f"RATE_LIMIT_{scope}_PER_MINUTE": "1000000000" for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS")},
    }
    if not os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run_script(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args[:2])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@dataclass
class Tenant:
    slug: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def make_tenant(env: dict[str, str], slug: str) -> Tenant:
    manage(env, "create_org", slug)
    key = manage(env, "create_api_key", slug, "--name", "bench").strip().splitlines()[-1]
    manage(env, "add_provider_account", slug, "disk", "--kind", "local", "--default")
    return Tenant(slug=slug, key=key)


def available_kinds(env: dict[str, str]) -> list[str]:
    out = manage(env, "shell", "-c", "from providers import registry; print(','.join(registry.kinds()))")
    return out.strip().splitlines()[-1].split(",")


def make_input(path: Path, size: int) -> Path:
    """A file of ``size`` random bytes, kept between runs."""
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            left = size
            while left:
                step = min(left, 4 * MIB)
                out.write(os.urandom(step))
                left -= step
    return path


# --- measurements ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a request goes: ``direct`` to the upstream, or through the gateway for one account kind."""

    name: str  # direct, local, openai
    port: int
    headers: dict[str, str]
    server_pid: int  # whose memory to sample
    files_path: str = "/v1/files"


@dataclass
class Results:
    rows: list[tuple[str, ...]] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measurement: str, kind: str, direct: str, gateway: str, ratio: str, target: str, met: bool | None):
        mark = "" if met is None else ("yes" if met else "**no**")
        self.rows.append((measurement, kind, direct, gateway, ratio, target, mark))
        if met is False:
            versus = f", {ratio} against direct" if ratio else ""
            self.missed.append(f"{measurement} ({kind}): gateway {gateway}{versus}; target {target}")


def disk_write_seconds(source: Path, repeats: int) -> list[float]:
    """Copy ``source`` into the data folder ``repeats`` times in 1 MiB chunks, as the local kind does,
    without HTTP. The copies stay until all are written, as uploaded files do: a file deleted at once
    never has to be written back, and on some disks writeback is what limits a stream of new files."""
    folder = WORK / "data" / "disk-reference"
    folder.mkdir(parents=True, exist_ok=True)
    seconds = []
    try:
        for index in range(repeats):
            started = time.perf_counter()
            with open(source, "rb") as handle, open(folder / f"{index}.bin", "wb") as out:
                while chunk := handle.read(MIB):
                    out.write(chunk)
            seconds.append(time.perf_counter() - started)
    finally:
        shutil.rmtree(folder)
    return seconds


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def check_upload(result: client.Upload, size: int, what: str) -> str:
    if result.status != 200 or result.body.get("bytes") != size:
        raise BenchError(f"{what}: status {result.status}, body {result.body}")
    return result.body["id"]


class Bench:
    def __init__(self, plan: Plan, upstream_port: int, targets: dict[str, Target], inputs: dict[int, Path]) -> None:
        self.plan = plan
        self.upstream_port = upstream_port
        self.targets = targets
        self.inputs = inputs
        self.crcs = {size: client.file_crc32(path) for size, path in inputs.items()}
        self.results = Results()
        self.big_ids: dict[str, str] = {}
        self.small_ids: dict[str, str] = {}

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def verify_stored(self, target: Target, file_id: str, size: int) -> None:
        """The bytes arrived whole: the upstream's CRC-32, or the local file on disk."""
        if target.name == "local":
            stored = next((WORK / "data" / "files").glob(f"*/{file_id}"), None)
            if stored is None or stored.stat().st_size != size:
                raise BenchError(f"local upload {file_id}: stored file missing or wrong size")
            if client.file_crc32(stored) != self.crcs[size]:
                raise BenchError(f"local upload {file_id}: stored bytes differ from the input")
            return
        status, record = client.request_json(HOST, self.upstream_port, "GET", f"/_bench/files/{file_id}", headers={})
        if status != 200 or record["bytes"] != size or record["crc32"] != self.crcs[size]:
            raise BenchError(f"{target.name} upload {file_id}: upstream recorded {record}")

    def upload_once(self, target: Target, size: int) -> tuple[float, Sample, str]:
        with sampled(target.server_pid) as sample:
            result = client.upload(HOST, target.port, target.files_path, self.inputs[size], headers=target.headers)
        file_id = check_upload(result, size, f"{target.name} upload of {size} bytes")
        return result.seconds, sample, file_id

    def warm_up(self) -> None:
        """Each worker imports, connects and fills its pools before anything is timed."""
        size = min(self.inputs)
        for target in self.targets.values():
            for _ in range(6):
                _, _, file_id = self.upload_once(target, size)
                self.small_ids[target.name] = file_id
            paths = [f"{target.files_path}/{self.small_ids[target.name]}"] * 200
            run = client.latency(HOST, target.port, paths, headers=target.headers, concurrency=4)
            if run.errors:
                raise BenchError(f"{target.name}: {run.errors} failed retrieves during warm-up")

    def uploads(self) -> None:
        for size in self.plan.upload_sizes:
            seconds: dict[str, list[float]] = {name: [] for name in self.targets}
            growth: dict[str, list[Sample]] = {name: [] for name in self.targets}
            for repeat in range(self.plan.repeats):
                for target in self.targets.values():  # interleaved, so drift hits every target alike
                    took, sample, file_id = self.upload_once(target, size)
                    if repeat == 0:
                        self.verify_stored(target, file_id, size)
                    if size == self.plan.big_size:
                        self.big_ids[target.name] = file_id
                    seconds[target.name].append(took)
                    growth[target.name].append(sample)
            self.log(
                f"upload {size // MIB} MiB: "
                + ", ".join(f"{n} {mbps(size, statistics.median(s)):.0f} MB/s" for n, s in seconds.items())
            )
            direct = mbps(size, statistics.median(seconds["direct"]))
            disk_seconds = disk_write_seconds(self.inputs[size], self.plan.repeats)
            disk = mbps(size, statistics.median(disk_seconds))
            local = mbps(size, statistics.median(seconds["local"]))
            self.results.add(
                f"Upload {size // MIB} MiB vs a plain write of the file to the same disk, MB/s",
                "local",
                f"{disk:.0f} (disk)",
                f"{local:.0f}",
                f"{local / disk:.2f}x",
                "",
                None,
            )
            for name in self.gateway_kinds():
                gateway = mbps(size, statistics.median(seconds[name]))
                ratio = gateway / direct
                target_met = ratio >= 0.8 if size == self.plan.big_size else None
                self.results.add(
                    f"Upload {size // MIB} MiB, MB/s (median of {self.plan.repeats})",
                    name,
                    f"{direct:.0f}",
                    f"{gateway:.0f}",
                    f"{ratio:.2f}x",
                    ">= 0.8x" if size == self.plan.big_size else "",
                    target_met,
                )
            if size == self.plan.big_size:
                upstream_growth = max(s.growth for s in growth["direct"]) / MIB
                for name in self.gateway_kinds():
                    gateway_growth = max(s.growth for s in growth[name]) / MIB
                    cpu = statistics.median(s.cpu_seconds for s in growth[name])
                    self.results.add(
                        f"Peak RSS growth, one {size // MIB} MiB upload, MiB (worst of {self.plan.repeats})",
                        name,
                        f"{upstream_growth:.1f}",
                        f"{gateway_growth:.1f}",
                        "",
                        "<= 32 MiB",
                        gateway_growth <= 32,
                    )
                    self.results.notes.append(
                        f"Gateway CPU per {size // MIB} MiB upload ({name}): {cpu:.2f} s (all gunicorn processes); "
                        f"upstream CPU per direct upload: "
                        f"{statistics.median(s.cpu_seconds for s in growth['direct']):.2f} s."
                    )

    def concurrent_uploads(self) -> None:
        count, size = self.plan.concurrent_count, self.plan.concurrent_size
        figures: dict[str, tuple[float, float]] = {}
        for target in self.targets.values():
            with sampled(target.server_pid) as sample, ThreadPoolExecutor(count) as pool:
                started = time.perf_counter()
                futures = [
                    pool.submit(
                        client.upload, HOST, target.port, target.files_path, self.inputs[size], headers=target.headers
                    )
                    for _ in range(count)
                ]
                results = [future.result() for future in futures]
                wall = time.perf_counter() - started
            for result in results:
                check_upload(result, size, f"{target.name} concurrent upload")
            figures[target.name] = (sample.growth / MIB, mbps(count * size, wall))
        self.log(
            f"{count} x {size // MIB} MiB concurrent: "
            + ", ".join(f"{n} +{g:.1f} MiB, {r:.0f} MB/s" for n, (g, r) in figures.items())
        )
        for name in self.gateway_kinds():
            growth, rate = figures[name]
            self.results.add(
                f"Peak RSS growth, {count} concurrent {size // MIB} MiB uploads, MiB",
                name,
                f"{figures['direct'][0]:.1f}",
                f"{growth:.1f}",
                "",
                "<= 128 MiB",
                growth <= 128,
            )
            self.results.add(
                f"Aggregate MB/s, {count} concurrent {size // MIB} MiB uploads",
                name,
                f"{figures['direct'][1]:.0f}",
                f"{rate:.0f}",
                f"{rate / figures['direct'][1]:.2f}x",
                "",
                None,
            )

    def downloads(self) -> None:
        size = self.plan.big_size
        for target in self.targets.values():
            if target.name not in self.big_ids:
                self.big_ids[target.name] = self.upload_once(target, size)[2]
        seconds: dict[str, list[float]] = {name: [] for name in self.targets}
        growth: dict[str, list[int]] = {name: [] for name in self.targets}
        server_cpu: dict[str, list[float]] = {name: [] for name in self.targets}
        client_cpu: dict[str, list[float]] = {name: [] for name in self.targets}
        pattern_crc = upstream.pattern_crc32(size)
        for _ in range(self.plan.repeats):
            for target in self.targets.values():
                path = f"{target.files_path}/{self.big_ids[target.name]}/content"
                client_started = time.thread_time()
                with sampled(target.server_pid) as sample:
                    result = client.download(HOST, target.port, path, headers=target.headers)
                client_cpu[target.name].append(time.thread_time() - client_started)
                server_cpu[target.name].append(sample.cpu_seconds)
                expected = self.crcs[size] if target.name == "local" else pattern_crc
                if result.status != 200 or result.nbytes != size or result.crc32 != expected:
                    raise BenchError(f"{target.name} download: status {result.status}, {result.nbytes} bytes")
                seconds[target.name].append(result.seconds)
                growth[target.name].append(sample.growth)
        self.log(
            f"download {size // MIB} MiB: "
            + ", ".join(f"{n} {mbps(size, statistics.median(s)):.0f} MB/s" for n, s in seconds.items())
        )
        direct = mbps(size, statistics.median(seconds["direct"]))
        for name in self.gateway_kinds():
            gateway = mbps(size, statistics.median(seconds[name]))
            self.results.add(
                f"Download {size // MIB} MiB, MB/s (median of {self.plan.repeats})",
                name,
                f"{direct:.0f}",
                f"{gateway:.0f}",
                f"{gateway / direct:.2f}x",
                ">= 0.9x",
                gateway / direct >= 0.9,
            )
            gateway_cpu, direct_cpu = statistics.median(server_cpu[name]), statistics.median(server_cpu["direct"])
            self.results.notes.append(
                f"CPU per {size // MIB} MiB download ({name}): gateway {gateway_cpu:.2f} s (all gunicorn processes), "
                f"client {statistics.median(client_cpu[name]):.2f} s; direct: upstream {direct_cpu:.2f} s, "
                f"client {statistics.median(client_cpu['direct']):.2f} s."
            )
            worst = max(growth[name]) / MIB
            self.results.add(
                f"Peak RSS growth, {size // MIB} MiB download, MiB",
                name,
                f"{max(growth['direct']) / MIB:.1f}",
                f"{worst:.1f}",
                "",
                "< 32 MiB",
                worst < 32,
            )

    def floor(self) -> None:
        """The server's floor: /healthz (no DRF, no database) through gunicorn and Django's middleware."""
        total = self.plan.latency_requests
        figures = {}
        for name, target in (("direct", self.targets["direct"]), ("gateway", self.targets["local"])):
            client.latency(HOST, target.port, ["/healthz"] * (total // 10), headers={}, concurrency=1)
            with sampled(target.server_pid) as sample:
                run = client.latency(HOST, target.port, ["/healthz"] * total, headers={}, concurrency=1)
            if run.errors:
                raise BenchError(f"{name}: {run.errors} failed health checks")
            figures[name] = (client.percentile(run.seconds, 50) * 1e3, sample.cpu_seconds / total * 1e3)
        (d50, dcpu), (g50, gcpu) = figures["direct"], figures["gateway"]
        self.log(f"healthz c1: direct p50 {d50:.2f} ms, gateway p50 {g50:.2f} ms ({gcpu:.2f} ms CPU)")
        self.results.add(
            "Floor: GET /healthz, concurrency 1: p50 ms (CPU ms)",
            "-",
            f"{d50:.2f} ({dcpu:.3f})",
            f"{g50:.2f} ({gcpu:.3f})",
            f"+{g50 - d50:.2f} ms",
            "",
            None,
        )

    def retrieves(self) -> None:
        self.floor()
        total = self.plan.latency_requests
        for concurrency in (1, 16):
            runs: dict[str, client.LatencyRun] = {}
            cpu: dict[str, float] = {}
            shares: dict[str, float] = {}
            for target in self.targets.values():
                paths = [f"{target.files_path}/{self.small_ids[target.name]}"] * total
                client.latency(HOST, target.port, paths[: total // 10], headers=target.headers, concurrency=concurrency)
                with sampled(target.server_pid) as sample:
                    run = client.latency(HOST, target.port, paths, headers=target.headers, concurrency=concurrency)
                cpu[target.name] = sample.cpu_seconds / total * 1e3
                shares[target.name] = sample.busiest_share
                if run.errors:
                    raise BenchError(f"{target.name}: {run.errors} of {total} retrieves failed")
                runs[target.name] = run
            self.log(
                f"retrieve c{concurrency}: "
                + ", ".join(
                    f"{n} p50 {client.percentile(r.seconds, 50) * 1e3:.2f} ms p99 "
                    f"{client.percentile(r.seconds, 99) * 1e3:.2f} ms {r.requests_per_second:.0f}/s"
                    for n, r in runs.items()
                )
            )
            direct = runs["direct"]
            d50, d99 = client.percentile(direct.seconds, 50) * 1e3, client.percentile(direct.seconds, 99) * 1e3
            for name in self.gateway_kinds():
                run = runs[name]
                g50, g99 = client.percentile(run.seconds, 50) * 1e3, client.percentile(run.seconds, 99) * 1e3
                label = f"Retrieve, concurrency {concurrency}, {total} requests"
                if concurrency == 1:
                    self.results.add(
                        f"{label}: p50 ms",
                        name,
                        f"{d50:.2f}",
                        f"{g50:.2f}",
                        f"+{g50 - d50:.2f} ms",
                        "<= +1 ms",
                        g50 - d50 <= 1.0,
                    )
                    self.results.add(
                        f"{label}: p99 ms", name, f"{d99:.2f}", f"{g99:.2f}", f"+{g99 - d99:.2f} ms", "", None
                    )
                    self.results.add(
                        "CPU per retrieve, ms (gunicorn processes; direct: the upstream)",
                        name,
                        f"{cpu['direct']:.3f}",
                        f"{cpu[name]:.3f}",
                        f"{cpu[name] / cpu['direct']:.1f}x",
                        "",
                        None,
                    )
                    cores = os.cpu_count() or 1
                    self.results.notes.append(
                        f"`{name}` retrieve costs the gateway {cpu[name]:.2f} ms of CPU: {cores} cores given to "
                        f"the gateway alone would serve at most {cores / cpu[name] * 1e3:.0f} retrieves/s."
                    )
                else:
                    rate = run.requests_per_second
                    self.results.add(
                        f"{label}: req/s",
                        name,
                        f"{direct.requests_per_second:.0f}",
                        f"{rate:.0f}",
                        f"{rate / direct.requests_per_second:.2f}x",
                        ">= 1500",
                        rate >= 1500,
                    )
                    self.results.add(f"{label}: p50 ms", name, f"{d50:.2f}", f"{g50:.2f}", "", "", None)
                    self.results.notes.append(
                        f"`{name}` retrieves at concurrency {concurrency}: the busiest gunicorn worker did "
                        f"{shares[name]:.0%} of the gateway's CPU (keep-alive connections stay with the worker "
                        "that accepted them, so one worker can end up with most of them)."
                    )
                    self.results.add(f"{label}: p99 ms", name, f"{d99:.2f}", f"{g99:.2f}", "", "< 25 ms", g99 < 25)

    def lists(self, list_targets: dict[str, Target]) -> None:
        count = self.plan.list_files
        for limit, requests in ((100, self.plan.list_requests), (count, 10)):
            runs: dict[str, client.LatencyRun] = {}
            for name, target in list_targets.items():
                paths = [f"{target.files_path}?limit={limit}"] * requests
                client.latency(HOST, target.port, paths[:3], headers=target.headers, concurrency=1)
                run = client.latency(HOST, target.port, paths, headers=target.headers, concurrency=1)
                if run.errors:
                    raise BenchError(f"{name}: {run.errors} failed lists")
                status, body = client.request_json(HOST, target.port, "GET", paths[0], headers=target.headers)
                # Only the local org holds exactly `count` files; the upstream holds a few more.
                more_ok = name != "local" or body.get("has_more") is (limit < count)
                if status != 200 or len(body["data"]) != limit or not more_ok:
                    raise BenchError(
                        f"{name} list limit={limit}: {len(body.get('data', []))} files, has_more {body.get('has_more')}"
                    )
                runs[name] = run
            self.log(
                f"list limit={limit}: "
                + ", ".join(f"{n} p50 {client.percentile(r.seconds, 50) * 1e3:.2f} ms" for n, r in runs.items())
            )
            d50 = client.percentile(runs["direct"].seconds, 50) * 1e3
            for name in self.gateway_kinds():
                if name not in runs:
                    continue
                g50 = client.percentile(runs[name].seconds, 50) * 1e3
                g99 = client.percentile(runs[name].seconds, 99) * 1e3
                strict = limit == 100
                self.results.add(
                    f"List of {count:,} files, limit={limit} ({requests} requests): p50 ms (p99)",
                    name,
                    f"{d50:.2f}",
                    f"{g50:.2f} ({g99:.2f})",
                    f"{g50 / d50:.2f}x",
                    "< 25 ms, limit exact" if strict else "limit exact",
                    g50 < 25 if strict else True,
                )

    def gateway_kinds(self) -> list[str]:
        return [name for name in self.targets if name != "direct"]


# --- the run ----------------------------------------------------------------------------------------


def machine_description(env: dict[str, str], workers: int, threads: int) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    database = env["DATABASE_URL"].split("://", 1)[0]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; database: {database}; load average at the end: {load} "
        "(other work on the machine skews every figure)",
        f"- Gateway: `gunicorn config.wsgi -k gthread -w {workers} --threads {threads} --keep-alive 30 --reuse-port "
        "--worker-tmp-dir /dev/shm`, DEBUG off; "
        "client, gateway and fake upstream share the machine's cores",
    ]


def render(results: Results, header: list[str], plan: Plan) -> str:
    columns = ("Measurement", "Kind", "Direct", "Gateway", "Gateway/direct", "Target", "Met")
    widths = [max(len(columns[i]), *(len(row[i]) for row in results.rows)) for i in range(len(columns))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    table = [line(columns), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    table += [line(row) for row in results.rows]
    quick = " (QUICK smoke run: small sizes, targets not meaningful)" if plan is QUICK else ""
    text = ["# Benchmark results" + quick, "", *header, "", *table, ""]
    text += [
        "Direct: the client talks to the fake upstream itself. For `openai` that is the real alternative "
        "to the gateway; for `local` (no upstream) the same direct upload/download to the fake upstream is "
        "the baseline, so its ratio includes writing to (or reading from) the disk.",
        "Memory: summed RSS of the gunicorn master and workers sampled every 50 ms, peak minus the value "
        "just before the transfer; the Direct column shows the fake upstream's own growth for comparison.",
        "",
    ]
    text += [f"- {note}" for note in results.notes]
    if results.missed:
        text += ["", "Missed targets:", *(f"- {miss}" for miss in results.missed)]
    return "\n".join(text) + "\n"


SECTIONS = ["uploads", "concurrent", "downloads", "retrieves", "lists"]


def serve(bench: Bench, gateway: Service, upstream_service: Service, tenant: Tenant, seconds: int) -> None:
    """Keep the warmed-up services running for a profiler (py-spy) or manual requests."""
    workers = [child.pid for child in psutil.Process(gateway.pid).children()]
    print(f"gateway  http://{HOST}:{gateway.port}  master {gateway.pid}, workers {workers}")
    print(f"upstream http://{HOST}:{upstream_service.port}  pid {upstream_service.pid}")
    print(f"key      Authorization: Bearer {tenant.key}   (accounts: disk (default), openai)")
    print(f"files    {bench.small_ids}")
    print(f"inputs   {[str(path) for path in bench.inputs.values()]}")
    print(f"serving for {seconds} s; Ctrl-C stops", flush=True)
    with suppress(KeyboardInterrupt):
        time.sleep(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description="filegate benchmark: gateway vs direct to a fake upstream")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run in well under a minute")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--only", action="append", choices=SECTIONS, help="run only these sections (repeatable); default: all"
    )
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for the gateway"
    )
    parser.add_argument(
        "--wsgi", default="config.wsgi", help="WSGI module:callable for gunicorn (for what-if experiments)"
    )
    parser.add_argument(
        "--serve",
        type=int,
        metavar="SECONDS",
        help="set up and warm up, print how to reach everything, keep it up this long (max 1800) for profiling",
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    # A SIGTERM (timeout, CI) unwinds like Ctrl-C, so the finally below still stops what we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    WORK.mkdir(exist_ok=True)
    shutil.rmtree(WORK / "data", ignore_errors=True)
    (WORK / "bench.sqlite3").unlink(missing_ok=True)
    inputs_dir = WORK / "inputs"
    inputs_dir.mkdir(exist_ok=True)
    sizes = {*plan.upload_sizes, plan.concurrent_size, plan.big_size}
    inputs = {size: make_input(inputs_dir / f"input-{size // 1024}k.bin", size) for size in sorted(sizes)}

    env = gateway_env()
    for item in args.env:
        name, _, value = item.partition("=")
        env[name] = value
    services: list[Service] = []
    run_id = time.strftime("%Y%m%d%H%M%S")
    tenant_slugs: list[str] = []
    started = time.monotonic()
    try:
        up_port = free_port()
        up = Service(
            "upstream", [PYTHON, str(BENCH_DIR / "upstream.py"), "--port", str(up_port)], env=env, port=up_port
        )
        services.append(up)
        up.wait_ready("/healthz")

        manage(env, "migrate", "--noinput")
        kinds = available_kinds(env)
        tenant = make_tenant(env, f"bench-{run_id}")
        list_tenant = make_tenant(env, f"bench-{run_id}-list")
        tenant_slugs += [tenant.slug, list_tenant.slug]
        has_openai = "openai" in kinds
        if has_openai:
            for slug in tenant_slugs:
                manage(
                    env,
                    "add_provider_account",
                    slug,
                    "openai",
                    "--kind",
                    "openai",
                    "--set",
                    "api_key=sk-bench",
                    "--set",
                    f"base_url=http://{HOST}:{up_port}/v1",
                )
        run_script(
            env,
            str(BENCH_DIR / "seed.py"),
            "seed",
            "--org",
            list_tenant.slug,
            "--account",
            "disk",
            "--count",
            str(plan.list_files),
        )
        client.request_json(HOST, up_port, "POST", f"/_bench/seed?count={plan.list_files}", headers={})

        gw_port = free_port()
        gw = Service(
            "gateway",
            [
                GUNICORN,
                args.wsgi,
                "-k",
                "gthread",
                "-w",
                str(args.workers),
                "--threads",
                str(args.threads),
                "-b",
                f"{HOST}:{gw_port}",
                "--keep-alive",
                "30",
                # One listening socket per worker: the kernel spreads connections over the workers
                # instead of letting whichever wakes first accept a whole burst of them.
                "--reuse-port",
                "--timeout",
                "300",
                # The worker heartbeat touches this file on every loop turn: keep it off the disk.
                "--worker-tmp-dir",
                "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir(),
            ],
            env=env,
            port=gw_port,
        )
        services.append(gw)
        gw.wait_ready("/healthz")

        targets = {"direct": Target("direct", up_port, {"Authorization": "Bearer sk-bench"}, up.pid)}
        targets["local"] = Target("local", gw_port, tenant.headers, gw.pid)
        if has_openai:
            targets["openai"] = Target("openai", gw_port, {**tenant.headers, "X-Provider-Account": "openai"}, gw.pid)
        list_targets = {"direct": targets["direct"], "local": Target("local", gw_port, list_tenant.headers, gw.pid)}
        if has_openai:
            # The upstream account's files, listed by the org that uploaded some of them: files the
            # gateway records as another org's are left out of a page, which would shorten it.
            list_targets["openai"] = targets["openai"]

        bench = Bench(plan, up_port, targets, inputs)
        bench.log(f"kinds measured: {', '.join(bench.gateway_kinds())} (registry has: {', '.join(kinds)})")
        if not has_openai:
            bench.results.notes.append("The `openai` kind is not in the registry yet: only `local` was measured.")
        bench.warm_up()
        if args.serve:
            serve(bench, gw, up, tenant, min(args.serve, 1800))
            return 0
        sections = args.only or SECTIONS
        if "uploads" in sections:
            bench.uploads()
        if "concurrent" in sections:
            bench.concurrent_uploads()
        if "downloads" in sections:
            bench.downloads()
        if "retrieves" in sections:
            bench.retrieves()
        if "lists" in sections:
            bench.lists(list_targets)
        if os.environ.get("DATABASE_URL"):
            run_script(env, str(BENCH_DIR / "seed.py"), "cleanup", *(f"--org={slug}" for slug in tenant_slugs))
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", file=sys.stderr)
        return 2
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(WORK / "data", ignore_errors=True)

    header = machine_description(env, args.workers, args.threads)
    header.append(f"- Run took {time.monotonic() - started:.0f} s")
    text = render(bench.results, header, plan)
    print()
    print(text)
    # Only a whole, unmodified run may replace bench/results.md.
    partial = bool(args.only or args.env or args.wsgi != "config.wsgi")
    results_path = WORK / "results-partial.md" if partial else plan.results_path
    results_path.write_text(text)
    print(f"written to {results_path.relative_to(ROOT)}")
    return 1 if args.strict and bench.results.missed else 0


if __name__ == "__main__":
    sys.exit(main())
