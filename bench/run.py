"""The benchmark: the gateway, deployed as in production, against direct calls to fast fake upstreams.

One run starts each kind's fake upstream (``bench/kinds.py``) and the gateway under gunicorn with
production's command line (``bench/deployment.py``), measures issue 14's figures (retrieves, small
uploads, lists, CPU per request and per GB) and the large transfers, each beside the same requests
sent straight to the upstream in the same run, prints the tables and writes them (``bench/report.py``).
It stops everything it started, by PID. PostgreSQL when ``DATABASE_URL`` is set (``bench/database.py``),
else a fresh SQLite file under ``bench/.work/``.

    .venv/bin/python bench/run.py            # the full run (make bench, make bench-pg), a few minutes
    .venv/bin/python bench/run.py --quick    # a smoke run with small sizes, writes bench/.work/
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from cryptography.fernet import Fernet

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"
sys.path.insert(0, str(BENCH_DIR))

import client  # noqa: E402
import database  # noqa: E402
import deployment  # noqa: E402
import stores  # noqa: E402
import upstream  # noqa: E402
from kinds import BUCKET, DEFAULT_KINDS, KINDS, OPENAI_API, Kind  # noqa: E402
from processes import HOST, BenchError, Sample, Service, free_port, sampled  # noqa: E402
from report import DETAIL, HEADLINE, LARGE, Results, render, write  # noqa: E402
from stores import ObjectStore  # noqa: E402

MIB = 1024 * 1024
GB = 1e9
PYTHON = sys.executable
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CONCURRENCY = 16  # issue 14's "at c=16": retrieves and small uploads
# The organisations' batch file limit: the bench uploads batch files of the plan's sizes (Groq's kind).
BATCH_MAX_SIZE = 1024 * MIB


@dataclass(frozen=True)
class Plan:
    name: str
    upload_sizes: tuple[int, ...]
    repeats: int
    big_size: int  # the upload that memory is measured on, and the download
    concurrent_count: int
    concurrent_size: int
    latency_requests: int
    small_files: int  # uploaded at concurrency 16, then listed
    small_size: int
    list_requests: int
    results_path: Path


FULL = Plan(
    name="full",
    upload_sizes=(16 * MIB, 256 * MIB),
    repeats=3,
    big_size=256 * MIB,
    concurrent_count=8,
    concurrent_size=64 * MIB,
    latency_requests=2000,
    small_files=1000,
    small_size=4096,
    list_requests=100,
    results_path=BENCH_DIR / "results.md",
)
QUICK = Plan(
    name="quick",
    upload_sizes=(1 * MIB, 8 * MIB),
    repeats=3,
    big_size=8 * MIB,
    concurrent_count=8,
    concurrent_size=2 * MIB,
    latency_requests=300,
    small_files=200,
    small_size=4096,
    list_requests=20,
    results_path=WORK / "results-quick.md",
)


# --- set-up ---------------------------------------------------------------------------------------


def gateway_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
        "CREDENTIAL_KEYS": Fernet.generate_key().decode(),  # required with DEBUG off
        "DATA_DIR": str(WORK / "data"),
        "ALLOWED_HOSTS": HOST,
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        # The benchmark's one key makes thousands of requests a second: limits it never reaches, so the
        # check still runs (and is measured) but refuses nothing.
        **{f"RATE_LIMIT_{scope}_PER_MINUTE": "1000000000" for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS")},
    }


def run_python(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args[:3])} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def manage(env: dict[str, str], *args: str) -> str:
    return run_python(env, "manage.py", *args)


# What the gateway's own settings make of the database, and which kinds its registry offers.
FACTS = """
import json
from django.db import connection
from providers import registry
with connection.cursor() as cursor:
    cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
    version = cursor.fetchone()[0]
settings = connection.settings_dict
print(json.dumps({
    "kinds": registry.kinds(), "vendor": connection.display_name, "version": version,
    "pool": repr(settings["OPTIONS"].get("pool", False)), "conn_max_age": settings["CONN_MAX_AGE"],
}))
"""


def account_key(role: str, kind: Kind) -> str:
    """Each account's upstream key is its own, so the fake keeps its files apart from every other's."""
    return f"sk-{role}-{kind.name}"


def make_tenant(env: dict[str, str], slug: str, kinds: list[Kind], fakes: dict[str, Service], role: str) -> str:
    """An organisation with one account per kind, named after the kind (``local`` the default); its API key."""
    manage(env, "create_org", slug, "--batch-max-size", str(BATCH_MAX_SIZE))
    key = manage(env, "create_api_key", slug, "--name", "bench").strip().splitlines()[-1]
    for kind in kinds:
        settings = kind.account_settings(url=fakes[kind.fake].url, key=account_key(role, kind))
        default = ["--default"] if kind.name == "local" else []
        manage(env, "add_provider_account", slug, kind.name, "--kind", kind.name, *default, *settings)
    return key


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


def make_batch_input(path: Path, size: int, line_bytes: int = 4096) -> Path:
    """A batch JSONL file of exactly ``size`` bytes: chat requests of about ``line_bytes`` each, with
    distinct ``custom_id``s and random text, every line one the gateway's batch check accepts."""
    if path.exists() and path.stat().st_size == size:
        return path
    template = (
        '{{"custom_id":"request-{index:08d}","method":"POST","url":"/v1/chat/completions","body":'
        '{{"model":"llama-3.1-8b-instant","messages":[{{"role":"user","content":"{text}"}}]}}}}\n'
    )
    overhead = len(template.format(index=0, text=""))
    lines = max(1, size // line_bytes)
    text_bytes = size - lines * overhead
    if text_bytes < 0:
        raise ValueError(f"{size} bytes cannot hold a batch line")
    with open(path, "w") as out:
        for index in range(lines):
            length = text_bytes // lines + (text_bytes % lines if index == lines - 1 else 0)
            out.write(template.format(index=index, text=os.urandom(length // 2 + 1).hex()[:length]))
    if path.stat().st_size != size:
        raise BenchError(f"{path.name}: {path.stat().st_size} bytes, not {size}")
    return path


@dataclass(frozen=True)
class Target:
    """Where requests go: straight to a fake upstream (a ``direct`` target), or through the gateway for one kind."""

    name: str  # "direct", "direct-<api>", or the kind
    port: int
    headers: dict[str, str]
    server_pid: int  # whose memory and CPU are sampled
    files_path: str
    fake_port: int  # the fake that receives the bytes (unless the gateway stores them)
    fake_headers: dict[str, str]  # the key the fake files them under
    stores_bytes: bool = False
    purpose: str = "assistants"  # "" sends no purpose field
    direct: str = ""  # for a gateway target: the name of its direct baseline
    # The kind's object store: a direct target's uploads and downloads go straight to it; a gateway
    # target's uploads are read back from it.
    store: ObjectStore | None = None
    reduced: bool = False  # measures only the big transfers and the retrieves (see bench/kinds.py)
    batch_input: bool = False  # uploads batch JSONL
    downloads: str = "upload"  # or "tool-file": a file the upstream made (Anthropic's)

    @property
    def is_direct(self) -> bool:
        return not self.direct

    @property
    def direct_to_store(self) -> bool:
        return self.is_direct and self.store is not None


def direct_name(kind: Kind) -> str:
    if kind.store:
        return f"direct-{kind.store}"
    return "direct" if kind.api == OPENAI_API else f"direct-{kind.api.name}"


def make_targets(
    kinds: list[Kind],
    fakes: dict[str, Service],
    object_stores: dict[str, ObjectStore],
    gateway: Service,
    api_key: str,
    role: str,
) -> dict[str, Target]:
    """The direct baselines first (one per upstream API or object store), then one gateway target per kind.

    A direct baseline is reduced when every kind measured against it is."""
    targets: dict[str, Target] = {}
    for kind in kinds:
        fake, name = fakes[kind.fake], direct_name(kind)
        headers = kind.api.headers(f"sk-direct-{role}-{kind.api.name}")
        reduced = all(other.reduced for other in kinds if direct_name(other) == name)
        targets[name] = Target(
            name=name,
            port=fake.port,
            headers=headers,
            server_pid=fake.pid,
            files_path=kind.api.files_path,
            fake_port=fake.port,
            fake_headers=headers,
            purpose=kind.purpose if kind.api.sends_purpose else "",
            store=object_stores.get(kind.store),
            reduced=reduced,
            batch_input=kind.batch_input,
            downloads=kind.downloads,
        )
    for kind in kinds:
        targets[kind.name] = Target(
            name=kind.name,
            port=gateway.port,
            headers={"Authorization": f"Bearer {api_key}", "X-Provider-Account": kind.name},
            server_pid=gateway.pid,
            files_path="/v1/files",
            fake_port=fakes[kind.fake].port,
            fake_headers=kind.api.headers(account_key(role, kind)),
            stores_bytes=kind.stores_bytes,
            purpose=kind.purpose,
            direct=direct_name(kind),
            store=object_stores.get(kind.store),
            reduced=kind.reduced,
            batch_input=kind.batch_input,
            downloads=kind.downloads,
        )
    return targets


# --- measurements ---------------------------------------------------------------------------------


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


def ms(run: client.LatencyRun, pct: float) -> float:
    return client.percentile(run.seconds, pct) * 1e3


def check_upload(result: client.Upload, size: int, what: str) -> str:
    """The uploaded file's id, once the answer says it holds ``size`` bytes (Anthropic says ``size_bytes``)."""
    if result.status != 200 or result.body.get("bytes", result.body.get("size_bytes")) != size:
        raise BenchError(f"{what}: status {result.status}, body {result.body}")
    return result.body["id"]


@dataclass
class SmallFiles:
    """One target's burst of small uploads: what was sent, what came back, what it cost."""

    run: client.LatencyRun
    sample: Sample
    ids: list[str] = field(default_factory=list)


class Bench:
    def __init__(
        self,
        plan: Plan,
        targets: dict[str, Target],
        small_targets: dict[str, Target],
        inputs: dict[int, Path],
        batch_inputs: dict[int, Path],
    ) -> None:
        self.plan = plan
        self.targets = targets
        # The same servers, another organisation and upstream keys; the reduced kinds are not in it.
        self.small_targets = small_targets
        self.inputs = inputs
        self.batch_inputs = batch_inputs  # the same sizes as batch JSONL, for the kinds that take only that
        self.crcs = {path: client.file_crc32(path) for path in [*inputs.values(), *batch_inputs.values()]}
        self.results = Results()
        self.big_ids: dict[str, str] = {}
        self.small_ids: dict[str, str] = {}
        self.small_files: dict[str, SmallFiles] = {}
        self.storage_uris: dict[str, str] = {}  # by file id, for the kinds that keep files in an object store

    def input_for(self, target: Target, size: int) -> Path:
        return (self.batch_inputs if target.batch_input else self.inputs)[size]

    def sent_crc(self, target: Target, size: int) -> int:
        return self.crcs[self.input_for(target, size)]

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def gateway_targets(self, *, full_only: bool = False) -> list[Target]:
        return [t for t in self.targets.values() if not t.is_direct and not (full_only and t.reduced)]

    def full_targets(self) -> list[Target]:
        """The targets measured on the whole plan (not the reduced kinds nor their direct baselines)."""
        return [target for target in self.targets.values() if not target.reduced]

    def stored(self, target: Target, ids: list[str]) -> dict[str, tuple[int, int]]:
        """(bytes, CRC-32) of what the target's uploads delivered, by id: read back from the data folder
        for a kind that stores the bytes, from the bucket for a kind on an object store (a direct
        upload's id is its object name), else as the fake received them under the target's key."""
        if target.store is not None:
            keys = {
                file_id: file_id if target.is_direct else stores.key_of(self.storage_uris[file_id]) for file_id in ids
            }
            return {file_id: target.store.read_back(key) for file_id, key in keys.items()}
        if target.stores_bytes:
            paths = {file_id: next((WORK / "data" / "files").glob(f"*/{file_id}"), None) for file_id in ids}
            return {
                file_id: (path.stat().st_size, client.file_crc32(path))
                for file_id, path in paths.items()
                if path is not None
            }
        status, records = client.request_json(
            HOST, target.fake_port, "GET", "/_bench/files", headers=target.fake_headers
        )
        if status != 200:
            raise BenchError(f"{target.name}: the fake's records answered {status}")
        return {file_id: (record["bytes"], record["crc32"]) for file_id, record in records.items()}

    def verify_stored(self, target: Target, expected: dict[str, tuple[int, int]]) -> None:
        """The bytes arrived whole: every id's (bytes, CRC-32) is what was sent."""
        stored = self.stored(target, list(expected))
        wrong = [file_id for file_id, figures in expected.items() if stored.get(file_id) != figures]
        if wrong:
            raise BenchError(
                f"{target.name}: {len(wrong)} uploads stored wrong, e.g. {wrong[0]}: {stored.get(wrong[0])}, "
                f"expected {expected[wrong[0]]}"
            )

    def upload_once(self, target: Target, size: int) -> tuple[float, Sample, str]:
        path = self.input_for(target, size)
        if target.store is not None and target.is_direct:
            key = f"direct/{secrets.token_hex(8)}/{path.name}"
            with sampled(target.server_pid) as sample:
                seconds = target.store.upload(path, key)
            return seconds, sample, key
        with sampled(target.server_pid) as sample:
            result = client.upload(
                HOST, target.port, target.files_path, path, headers=target.headers, purpose=target.purpose
            )
        file_id = check_upload(result, size, f"{target.name} upload of {size} bytes")
        if target.store is not None:
            if not str(result.body.get("storage_uri", "")).startswith(("s3://", "gs://")):
                raise BenchError(f"{target.name} upload: no storage_uri in {result.body}")
            self.storage_uris[file_id] = result.body["storage_uri"]
        return result.seconds, sample, file_id

    def retrieve_latency(self, target: Target, total: int, concurrency: int) -> client.LatencyRun:
        """``total`` retrieves of the target's small file; a direct object store answers metadata reads."""
        if target.direct_to_store:
            assert target.store is not None
            return target.store.latency(self.small_ids[target.name], total, concurrency)
        paths = [f"{target.files_path}/{self.small_ids[target.name]}"] * total
        return client.latency(HOST, target.port, paths, headers=target.headers, concurrency=concurrency)

    def warm_up(self) -> None:
        """Each worker imports, connects and fills its pools before anything is timed."""
        size = min(self.inputs)
        for target in self.targets.values():
            for _ in range(6):
                _, _, file_id = self.upload_once(target, size)
                self.small_ids[target.name] = file_id
            run = self.retrieve_latency(target, 200, 4)
            if run.errors:
                raise BenchError(f"{target.name}: {run.errors} failed retrieves during warm-up")
        for target in self.small_targets.values():
            # Lists only: the small-files organisation must hold exactly the files of its burst.
            run = client.latency(HOST, target.port, [target.files_path] * 40, headers=target.headers, concurrency=4)
            if run.errors:
                raise BenchError(f"{target.name}: {run.errors} failed lists during warm-up")

    # --- large transfers ------------------------------------------------------------------------------

    def uploads(self) -> None:
        for size in self.plan.upload_sizes:
            is_big = size == self.plan.big_size
            targets = list(self.targets.values()) if is_big else self.full_targets()
            if not targets:
                continue
            seconds: dict[str, list[float]] = {target.name: [] for target in targets}
            samples: dict[str, list[Sample]] = {target.name: [] for target in targets}
            for repeat in range(self.plan.repeats):
                for target in targets:  # interleaved, so drift hits every target alike
                    took, sample, file_id = self.upload_once(target, size)
                    if repeat == 0:
                        self.verify_stored(target, {file_id: (size, self.sent_crc(target, size))})
                    if size == self.plan.big_size:
                        self.big_ids[target.name] = file_id
                    seconds[target.name].append(took)
                    samples[target.name].append(sample)
            self.log(
                f"upload {size // MIB} MiB: "
                + ", ".join(f"{n} {mbps(size, statistics.median(s)):.0f} MB/s" for n, s in seconds.items())
            )
            if is_big:
                self.log(
                    f"upload {size // MIB} MiB, RSS growth of each repeat: "
                    + ", ".join(
                        f"{n} " + "/".join(f"{s.growth / MIB:.1f}" for s in repeats) for n, repeats in samples.items()
                    )
                )
            rate = {name: mbps(size, statistics.median(values)) for name, values in seconds.items()}
            if any(target.stores_bytes for target in self.gateway_targets()):
                self.disk_reference(size, rate)
            for target in self.gateway_targets(full_only=not is_big):
                ratio = rate[target.name] / rate[target.direct]
                self.results.versus(
                    LARGE,
                    f"Upload {size // MIB} MiB, MB/s (median of {self.plan.repeats})",
                    target.name,
                    direct=rate[target.direct],
                    gateway=rate[target.name],
                    places=0,
                    target=">= 0.8x" if is_big else "",
                    met=ratio >= 0.8 if is_big else None,
                )
                if is_big:
                    self.upload_costs(target, size, samples)

    def disk_reference(self, size: int, rate: dict[str, float]) -> None:
        disk = mbps(size, statistics.median(disk_write_seconds(self.inputs[size], self.plan.repeats)))
        for target in self.gateway_targets():
            if target.stores_bytes:
                self.results.add(
                    LARGE,
                    f"Upload {size // MIB} MiB vs a plain write of the file to the same disk, MB/s",
                    target.name,
                    direct=f"{disk:.0f} (disk)",
                    gateway=f"{rate[target.name]:.0f}",
                    ratio=f"{rate[target.name] / disk:.2f}x",
                )

    def upload_costs(self, target: Target, size: int, samples: dict[str, list[Sample]]) -> None:
        """Memory growth (worst of the repeats) and CPU per GB (median), the gateway's beside the upstream's."""
        measurement = f"Peak RSS growth, one {size // MIB} MiB upload, MiB (worst of {self.plan.repeats})"
        self.memory(measurement, target, samples, limit_mib=32)
        self.cpu_per_gb("uploaded", size, target, samples)

    def memory(self, measurement: str, target: Target, samples: dict[str, list[Sample]], *, limit_mib: int) -> None:
        """Peak RSS growth, the worst of ``samples``: the gateway's beside the upstream's, against a limit."""
        direct, gateway = (max(s.growth for s in samples[name]) / MIB for name in (target.direct, target.name))
        self.results.add(
            LARGE,
            measurement,
            target.name,
            direct=f"{direct:.1f}",
            gateway=f"{gateway:.1f}",
            target=f"<= {limit_mib} MiB",
            met=gateway <= limit_mib,
        )

    def cpu_per_gb(self, verb: str, size: int, target: Target, samples: dict[str, list[Sample]]) -> None:
        gateway = statistics.median(s.cpu_seconds for s in samples[target.name]) / (size / GB)
        upstream_own = statistics.median(s.cpu_seconds for s in samples[target.direct]) / (size / GB)
        self.results.versus(
            HEADLINE,
            f"CPU seconds per GB {verb} ({size // MIB} MiB transfers)",
            target.name,
            direct=upstream_own,
            gateway=gateway,
            places=2,
        )

    def concurrent_uploads(self) -> None:
        if not self.full_targets():
            return  # only reduced kinds measured
        count, size = self.plan.concurrent_count, self.plan.concurrent_size
        figures: dict[str, float] = {}
        samples: dict[str, list[Sample]] = {}
        for target in self.full_targets():
            with sampled(target.server_pid) as sample, ThreadPoolExecutor(count) as pool:
                started = time.perf_counter()
                futures = [
                    pool.submit(
                        client.upload,
                        HOST,
                        target.port,
                        target.files_path,
                        self.input_for(target, size),
                        headers=target.headers,
                        purpose=target.purpose,
                    )
                    for _ in range(count)
                ]
                results = [future.result() for future in futures]
                wall = time.perf_counter() - started
            for result in results:
                check_upload(result, size, f"{target.name} concurrent upload")
            figures[target.name] = mbps(count * size, wall)
            samples[target.name] = [sample]
        self.log(
            f"{count} x {size // MIB} MiB concurrent: "
            + ", ".join(f"{n} +{samples[n][0].growth / MIB:.1f} MiB, {r:.0f} MB/s" for n, r in figures.items())
        )
        for target in self.gateway_targets(full_only=True):
            self.memory(
                f"Peak RSS growth, {count} concurrent {size // MIB} MiB uploads, MiB", target, samples, limit_mib=128
            )
            self.results.versus(
                LARGE,
                f"Aggregate MB/s, {count} concurrent {size // MIB} MiB uploads",
                target.name,
                direct=figures[target.direct],
                gateway=figures[target.name],
                places=0,
            )

    def tool_file(self, target: Target, size: int) -> str:
        """A downloadable file of ``size`` bytes made at the fake under the target's upstream key, as
        Anthropic's code execution tool makes one (uploads to Anthropic are never downloadable)."""
        path = f"/_bench/anthropic-tool-file?bytes={size}"
        status, body = client.request_json(HOST, target.fake_port, "POST", path, headers=target.fake_headers)
        if status != 200 or body.get("downloadable") is not True:
            raise BenchError(f"{target.name}: the fake's tool file answered {status}: {body}")
        return body["id"]

    def download_once(self, target: Target, file_id: str) -> client.Download:
        if target.direct_to_store:
            assert target.store is not None
            return target.store.download(file_id)
        path = f"{target.files_path}/{file_id}/content"
        return client.download(HOST, target.port, path, headers=target.headers)

    def downloads(self) -> None:
        size = self.plan.big_size
        for target in self.targets.values():
            if target.downloads == "tool-file":
                self.big_ids[target.name] = self.tool_file(target, size)
            elif target.name not in self.big_ids:
                self.big_ids[target.name] = self.upload_once(target, size)[2]
        seconds: dict[str, list[float]] = {name: [] for name in self.targets}
        samples: dict[str, list[Sample]] = {name: [] for name in self.targets}
        client_cpu: dict[str, list[float]] = {name: [] for name in self.targets}
        pattern_crc = upstream.pattern_crc32(size)
        for _ in range(self.plan.repeats):
            for target in self.targets.values():
                client_started = time.thread_time()
                with sampled(target.server_pid) as sample:
                    result = self.download_once(target, self.big_ids[target.name])
                client_cpu[target.name].append(time.thread_time() - client_started)
                keeps_bytes = target.stores_bytes or target.store is not None
                expected = self.sent_crc(target, size) if keeps_bytes else pattern_crc
                if result.status != 200 or result.nbytes != size or result.crc32 != expected:
                    raise BenchError(f"{target.name} download: status {result.status}, {result.nbytes} bytes")
                seconds[target.name].append(result.seconds)
                samples[target.name].append(sample)
        self.log(
            f"download {size // MIB} MiB: "
            + ", ".join(f"{n} {mbps(size, statistics.median(s)):.0f} MB/s" for n, s in seconds.items())
        )
        for target in self.gateway_targets():
            direct = mbps(size, statistics.median(seconds[target.direct]))
            gateway = mbps(size, statistics.median(seconds[target.name]))
            self.results.versus(
                LARGE,
                f"Download {size // MIB} MiB, MB/s (median of {self.plan.repeats})",
                target.name,
                direct=direct,
                gateway=gateway,
                places=0,
                target=">= 0.9x",
                met=gateway / direct >= 0.9,
            )
            self.memory(f"Peak RSS growth, {size // MIB} MiB download, MiB", target, samples, limit_mib=32)
            self.cpu_per_gb("downloaded", size, target, samples)
            self.results.notes.append(
                f"Client CPU per {size // MIB} MiB download ({target.name}): "
                f"{statistics.median(client_cpu[target.name]):.2f} s through the gateway, "
                f"{statistics.median(client_cpu[target.direct]):.2f} s direct."
            )
            if target.downloads == "tool-file":
                self.results.notes.append(
                    f"`{target.name}` downloads a file the fake made as Anthropic's code execution tool does (its "
                    "own key's, unknown to the gateway, which looks it up on the account): Anthropic never lets "
                    "an uploaded file be downloaded."
                )

    # --- small requests ---------------------------------------------------------------------------

    def floor(self) -> None:
        """The server's floor: /healthz (no DRF, no database) through gunicorn and Django's middleware."""
        total = self.plan.latency_requests
        figures = {}
        gateway = next((t for t in self.gateway_targets() if not self.targets[t.direct].direct_to_store), None)
        if gateway is None:
            return  # only object stores measured: no HTTP server of the bench's own to compare with
        direct = self.targets[gateway.direct]
        for name, target in (("direct", direct), ("gateway", gateway)):
            client.latency(HOST, target.port, ["/healthz"] * (total // 10), headers={}, concurrency=1)
            with sampled(target.server_pid) as sample:
                run = client.latency(HOST, target.port, ["/healthz"] * total, headers={}, concurrency=1)
            if run.errors:
                raise BenchError(f"{name}: {run.errors} failed health checks")
            figures[name] = (ms(run, 50), sample.cpu_seconds / total * 1e3)
        (d50, dcpu), (g50, gcpu) = figures["direct"], figures["gateway"]
        self.log(f"healthz c1: direct p50 {d50:.2f} ms, gateway p50 {g50:.2f} ms ({gcpu:.2f} ms CPU)")
        self.results.add(
            DETAIL,
            "Floor: GET /healthz at concurrency 1, p50 ms (CPU ms)",
            "-",
            direct=f"{d50:.2f} ({dcpu:.3f})",
            gateway=f"{g50:.2f} ({gcpu:.3f})",
            ratio=f"+{g50 - d50:.2f} ms",
        )

    def retrieve_runs(self, concurrency: int) -> dict[str, tuple[client.LatencyRun, Sample]]:
        total = self.plan.latency_requests
        runs = {}
        for target in self.targets.values():
            self.retrieve_latency(target, total // 10, concurrency)
            with sampled(target.server_pid) as sample:
                run = self.retrieve_latency(target, total, concurrency)
            if run.errors:
                raise BenchError(f"{target.name}: {run.errors} of {total} retrieves failed")
            if not target.direct_to_store:  # a store's metadata reads check the size themselves
                path = f"{target.files_path}/{self.small_ids[target.name]}"
                status, body = client.request_json(HOST, target.port, "GET", path, headers=target.headers)
                if status != 200 or body.get("id") != self.small_ids[target.name]:
                    raise BenchError(f"{target.name} retrieve: status {status}, body {body}")
            runs[target.name] = (run, sample)
        self.log(
            f"retrieve c{concurrency}: "
            + ", ".join(
                f"{n} p50 {ms(r, 50):.2f} ms p99 {ms(r, 99):.2f} ms {r.requests_per_second:.0f}/s"
                for n, (r, _) in runs.items()
            )
        )
        return runs

    def retrieves(self) -> None:
        self.floor()
        total = self.plan.latency_requests
        one, many = self.retrieve_runs(1), self.retrieve_runs(CONCURRENCY)

        def cpu_ms(sample: Sample) -> float:
            return sample.cpu_seconds / total * 1e3

        for target in self.gateway_targets():
            (d1, dcpu1), (g1, gcpu1) = one[target.direct], one[target.name]
            (d16, dcpu16), (g16, gcpu16) = many[target.direct], many[target.name]
            overhead = ms(g1, 50) - ms(d1, 50)
            rate, gcpu = g16.requests_per_second, cpu_ms(gcpu16)
            add = self.results.add
            add(
                HEADLINE,
                "Retrieve p50 at concurrency 1, ms",
                target.name,
                direct=f"{ms(d1, 50):.2f}",
                gateway=f"{ms(g1, 50):.2f}",
                ratio=f"{overhead:+.2f} ms",
                target="<= direct + 1 ms",
                met=overhead <= 1.0,
            )
            versus = self.results.versus
            versus(
                HEADLINE,
                f"Retrieves at concurrency {CONCURRENCY}, req/s",
                target.name,
                direct=d16.requests_per_second,
                gateway=rate,
                places=0,
                target=">= 1500",
                met=rate >= 1500,
            )
            versus(
                HEADLINE,
                f"Gateway CPU per GET, ms (retrieves at concurrency {CONCURRENCY})",
                target.name,
                direct=cpu_ms(dcpu16),
                gateway=gcpu,
                places=3,
                target="<= 0.8 ms",
                met=gcpu <= 0.8,
            )
            add(
                DETAIL,
                "Retrieve p99 at concurrency 1, ms",
                target.name,
                direct=f"{ms(d1, 99):.2f}",
                gateway=f"{ms(g1, 99):.2f}",
            )
            versus(
                DETAIL,
                "CPU per GET at concurrency 1, ms",
                target.name,
                direct=cpu_ms(dcpu1),
                gateway=cpu_ms(gcpu1),
                places=3,
            )
            for pct, goal in ((50, ""), (99, "< 25 ms")):
                add(
                    DETAIL,
                    f"Retrieve p{pct} at concurrency {CONCURRENCY}, ms",
                    target.name,
                    direct=f"{ms(d16, pct):.2f}",
                    gateway=f"{ms(g16, pct):.2f}",
                    target=goal,
                    met=ms(g16, pct) < 25 if goal else None,
                )
            cores = os.cpu_count() or 1
            self.results.notes.append(
                f"`{target.name}` retrieves at concurrency {CONCURRENCY}: {gcpu:.2f} ms of gateway CPU each, so "
                f"{cores} cores given to the gateway alone would serve at most {cores / gcpu * 1e3:.0f}/s; the "
                f"busiest gunicorn process did {gcpu16.busiest_share:.0%} of the gateway's CPU."
            )

    def small_burst(self, target: Target) -> SmallFiles:
        """``small_files`` uploads of distinct random files at concurrency 16, every answer checked."""
        count, size = self.plan.small_files, self.plan.small_size
        contents = [os.urandom(size) for _ in range(count)]
        names = [f"small-{index:05d}.bin" for index in range(count)]
        requests = [
            client.build_upload(
                HOST,
                target.port,
                target.files_path,
                headers=target.headers,
                filename=names[index],
                content=contents[index],
                purpose=target.purpose,
            )
            for index in range(count)
        ]
        with sampled(target.server_pid) as sample:
            run = client.send(HOST, target.port, requests, concurrency=CONCURRENCY, keep_answers=True)
        burst = SmallFiles(run=run, sample=sample)
        expected: dict[str, tuple[int, int]] = {}
        for index in range(count):
            status, raw = run.answers.get(index, (0, b""))
            body = json.loads(raw or b"{}")
            if status != 200 or (body.get("bytes"), body.get("filename")) != (size, names[index]):
                raise BenchError(f"{target.name} small upload {index}: status {status}, body {raw[:300]!r}")
            expected[body["id"]] = (size, zlib.crc32(contents[index]))
            burst.ids.append(body["id"])
        if len(expected) != count:
            raise BenchError(f"{target.name} small uploads: {count - len(expected)} ids given twice")
        self.verify_stored(target, expected)
        return burst

    def small_uploads(self, *, report: bool = True) -> None:
        if not self.small_targets:
            return  # only reduced kinds measured
        for target in self.small_targets.values():
            self.small_files[target.name] = self.small_burst(target)
        count, size = self.plan.small_files, self.plan.small_size
        self.log(
            f"{count} small uploads c{CONCURRENCY}: "
            + ", ".join(f"{n} {b.run.requests_per_second:.0f} files/s" for n, b in self.small_files.items())
        )
        if not report:
            return
        for target in self.gateway_targets(full_only=True):
            direct, gateway = self.small_files[target.direct], self.small_files[target.name]
            ratio = gateway.run.requests_per_second / direct.run.requests_per_second
            self.results.versus(
                HEADLINE,
                f"Small uploads at concurrency {CONCURRENCY} ({count:,} files of {size // 1024} KiB), files/s",
                target.name,
                direct=direct.run.requests_per_second,
                gateway=gateway.run.requests_per_second,
                places=0,
                target=">= 0.4x direct",
                met=ratio >= 0.4,
            )
            direct_cpu, gateway_cpu = (b.sample.cpu_seconds / count * 1e3 for b in (direct, gateway))
            self.results.versus(
                DETAIL, "CPU per small upload, ms", target.name, direct=direct_cpu, gateway=gateway_cpu, places=3
            )
            self.results.add(
                DETAIL,
                f"Small upload p50 (p99) at concurrency {CONCURRENCY}, ms",
                target.name,
                direct=f"{ms(direct.run, 50):.2f} ({ms(direct.run, 99):.2f})",
                gateway=f"{ms(gateway.run, 50):.2f} ({ms(gateway.run, 99):.2f})",
            )

    def lists(self) -> None:
        """The small-files organisation lists all its files (the SDK's ``files.list()``), one at a time."""
        if not self.small_targets:
            return  # only reduced kinds measured
        if not self.small_files:
            self.small_uploads(report=False)
        count, requests = self.plan.small_files, self.plan.list_requests
        runs: dict[str, tuple[client.LatencyRun, Sample]] = {}
        for target in self.small_targets.values():
            paths = [target.files_path] * requests
            client.latency(HOST, target.port, paths[:3], headers=target.headers, concurrency=1)
            with sampled(target.server_pid) as sample:
                run = client.latency(HOST, target.port, paths, headers=target.headers, concurrency=1)
            if run.errors:
                raise BenchError(f"{target.name}: {run.errors} failed lists")
            status, body = client.request_json(HOST, target.port, "GET", target.files_path, headers=target.headers)
            listed = [item["id"] for item in body.get("data", [])]
            if status != 200 or body.get("has_more") or sorted(listed) != sorted(self.small_files[target.name].ids):
                raise BenchError(f"{target.name} list: status {status}, {len(listed)} files, not the {count} uploaded")
            runs[target.name] = (run, sample)
        self.log("list: " + ", ".join(f"{n} p50 {ms(r, 50):.2f} ms" for n, (r, _) in runs.items()))
        for target in self.gateway_targets(full_only=True):
            (direct, direct_sample), (gateway, gateway_sample) = runs[target.direct], runs[target.name]
            ratio = ms(gateway, 50) / ms(direct, 50)
            self.results.versus(
                HEADLINE,
                f"List of an organisation's {count:,} files, p50 ms",
                target.name,
                direct=ms(direct, 50),
                gateway=ms(gateway, 50),
                places=2,
                target="<= 2x direct",
                met=ratio <= 2,
            )
            direct_cpu, gateway_cpu = (s.cpu_seconds / requests * 1e3 for s in (direct_sample, gateway_sample))
            self.results.add(
                DETAIL,
                f"List of {count:,} files: p99 ms (CPU ms per list)",
                target.name,
                direct=f"{ms(direct, 99):.2f} ({direct_cpu:.2f})",
                gateway=f"{ms(gateway, 99):.2f} ({gateway_cpu:.2f})",
            )


# --- the run ----------------------------------------------------------------------------------------


def describe_database(db: database.BenchDatabase, facts: dict) -> str:
    where = "a fresh file in bench/.work/"
    if db.is_postgres:
        lifetime = "created and dropped by the run" if db.created else "existing; the run's organisations removed"
        where = f"database `{db.name}`, {lifetime}"
    if not db.is_postgres:
        return f"{facts['vendor']} {facts['version']} ({where})"
    pool = "off" if facts["pool"] == "False" else f"on ({facts['pool']})"
    return f"{facts['vendor']} {facts['version']} ({where}; psycopg pool: {pool}, CONN_MAX_AGE {facts['conn_max_age']})"


def machine_description(database_text: str, command: str, load_before: str, kinds: list[str]) -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores ({cpu}), "
        f"{psutil.virtual_memory().total / 1024**3:.0f} GiB RAM, {platform.system()} {platform.release()}",
        f"- Load average: {load_before} at the start, {load} at the end (other work on the machine skews every figure)",
        f"- Database: {database_text}",
        f"- Gateway: `{command}` (bound to {HOST}), Python {platform.python_version()}, DEBUG off; "
        f"kinds measured: {', '.join(kinds)}; client, gateway and fake upstreams share the machine's cores",
    ]


METHOD = [
    "Direct: the client sends the same requests straight to the kind's fake upstream, in the same run. "
    "For `local` (no upstream) the direct baseline is the OpenAI fake's, so its ratio includes the disk. "
    "For `bedrock` and `vertex` it is the client going straight to the bucket (moto's S3 server, the GCS "
    "emulator) with boto3 / google-cloud-storage, and the Direct CPU column is the store's process. "
    "`anthropic`, `groq`, `bedrock` and `vertex` measure only the big transfers and the retrieves "
    "(bench/README.md); `groq` sends batch JSONL, and `anthropic` downloads a file its tools would make. "
    "In CPU rows the Direct column is the upstream's own process serving the direct requests; the Gateway "
    "column is all gunicorn processes (master and workers).",
    "Memory: summed RSS of the gunicorn master and workers sampled every 50 ms, peak minus the value "
    "just before the transfer; the Direct column shows the fake upstream's own growth.",
]

SECTIONS = ["uploads", "concurrent", "downloads", "retrieves", "small", "lists"]


def serve(bench: Bench, gateway: Service, fakes: dict[str, Service], api_key: str, seconds: int) -> None:
    """Keep the warmed-up services running for a profiler (py-spy) or manual requests."""
    workers = [child.pid for child in psutil.Process(gateway.pid).children()]
    print(f"gateway  {gateway.url}  master {gateway.pid}, workers {workers}")
    for name, fake in fakes.items():
        print(f"upstream {fake.url}  pid {fake.pid} ({name})")
    accounts = ", ".join(target.name for target in bench.gateway_targets())
    print(f"key      Authorization: Bearer {api_key}   (X-Provider-Account: {accounts}; local is the default)")
    print(f"files    {bench.small_ids}")
    print(f"inputs   {[str(path) for path in bench.inputs.values()]}")
    print(f"serving for {seconds} s; Ctrl-C stops", flush=True)
    with suppress(KeyboardInterrupt):
        time.sleep(seconds)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="filegate benchmark: gateway vs direct to fake upstreams")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run in about a minute")
    deployment.add_arguments(parser)
    parser.add_argument(
        "--kind",
        action="append",
        choices=sorted(KINDS),
        help=f"measure this kind (repeatable); default: {', '.join(DEFAULT_KINDS)}",
    )
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
    return parser.parse_args()


def measure(bench: Bench, sections: list[str]) -> None:
    steps = {
        "uploads": bench.uploads,
        "concurrent": bench.concurrent_uploads,
        "downloads": bench.downloads,
        "retrieves": bench.retrieves,
        "small": bench.small_uploads,
        "lists": bench.lists,
    }
    for section in SECTIONS:
        if section in sections:
            steps[section]()


def make_inputs(plan: Plan, kinds: list[Kind]) -> tuple[dict[int, Path], dict[int, Path]]:
    """Random files of every size the plan sends, and batch JSONL of the sizes the reduced kinds send
    (the warm-up's and the big one) when a kind takes only batch files."""
    folder = WORK / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {*plan.upload_sizes, plan.concurrent_size, plan.big_size}
    inputs = {size: make_input(folder / f"input-{size // 1024}k.bin", size) for size in sorted(sizes)}
    batch_sizes = {min(sizes), plan.big_size} if any(kind.batch_input for kind in kinds) else set()
    batch = {size: make_batch_input(folder / f"batch-{size // 1024}k.jsonl", size) for size in sorted(batch_sizes)}
    return inputs, batch


@dataclass
class World:
    """What one run starts and creates, so that it can stop and remove all of it."""

    db: database.BenchDatabase
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    slugs: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def start(self, name: str, args: list[str], port: int, ready_path: str = "/healthz") -> Service:
        service = Service(name, args, env=self.env, port=port, cwd=ROOT, logs=WORK / "logs")
        self.services.append(service)
        service.wait_ready(ready_path)
        return service

    def tear_down(self) -> None:
        for service in reversed(self.services):
            service.stop()
        shutil.rmtree(WORK / "data", ignore_errors=True)
        try:
            if self.db.is_postgres and self.db.created:
                database.drop(self.db)
            elif self.db.is_postgres and self.slugs:
                run_python(self.env, str(BENCH_DIR / "cleanup.py"), *(f"--org={slug}" for slug in self.slugs))
        except Exception as exc:
            print(f"warning: the benchmark's database was not cleaned up: {exc}", file=sys.stderr)


def set_up(
    world: World, args: argparse.Namespace, plan: Plan, shape: deployment.Deployment, kinds: list[Kind]
) -> Bench:
    """Start the fakes and object stores (with the bucket), prepare the database and two organisations,
    start the gateway, warm it up."""
    fakes: dict[str, Service] = {}
    object_stores: dict[str, ObjectStore] = {}
    for kind in kinds:
        if kind.fake in fakes:
            continue
        port = free_port()
        if kind.store:
            command, ready = stores.server_command(kind.store, port), stores.READY_PATHS[kind.store]
            fakes[kind.fake] = world.start(kind.fake, command, port, ready)
            object_stores[kind.store] = ObjectStore(kind.store, fakes[kind.fake].url, BUCKET)
            object_stores[kind.store].create_bucket()
        else:
            command = [PYTHON, str(BENCH_DIR / kind.fake), "--port", str(port)]
            fakes[kind.fake] = world.start(kind.fake.removesuffix(".py"), command, port)
    manage(world.env, "migrate", "--noinput")
    world.facts = json.loads(manage(world.env, "shell", "-c", FACTS).strip().splitlines()[-1])
    missing = [kind.name for kind in kinds if kind.name not in world.facts["kinds"]]
    if missing:
        raise BenchError(f"kinds not in the gateway's registry: {', '.join(missing)}")
    run_id = time.strftime("%Y%m%d%H%M%S")
    world.slugs = [f"bench-{run_id}", f"bench-{run_id}-small"]
    api_key = make_tenant(world.env, world.slugs[0], kinds, fakes, "main")
    small_key = make_tenant(world.env, world.slugs[1], kinds, fakes, "small")
    port = free_port()
    # The worker heartbeat touches a file on every loop turn: the bench keeps it in memory.
    heartbeat = ["--worker-tmp-dir", "/dev/shm"] if Path("/dev/shm").is_dir() else []
    gateway = world.start("gateway", [GUNICORN, *shape.args(args.wsgi), *heartbeat, "--bind", f"{HOST}:{port}"], port)
    targets = make_targets(kinds, fakes, object_stores, gateway, api_key, "main")
    full_kinds = [kind for kind in kinds if not kind.reduced]
    small_targets = make_targets(full_kinds, fakes, object_stores, gateway, small_key, "small")
    bench = Bench(plan, targets, small_targets, *make_inputs(plan, kinds))
    bench.log(f"gateway: {shape.command(args.wsgi)}; database: {describe_database(world.db, world.facts)}")
    bench.warm_up()
    if args.serve:
        serve(bench, gateway, fakes, api_key, min(args.serve, 1800))
    return bench


def main() -> int:
    args = parse_args()
    plan = QUICK if args.quick else FULL
    shape = deployment.from_arguments(args)
    kinds = [KINDS[name] for name in (args.kind or DEFAULT_KINDS)]
    # A SIGTERM (timeout, CI) unwinds like Ctrl-C, so the finally below still stops what we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load_before = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    started = time.monotonic()
    WORK.mkdir(exist_ok=True)
    shutil.rmtree(WORK / "data", ignore_errors=True)
    try:
        db = database.prepare(os.environ.get("DATABASE_URL"), WORK / "bench.sqlite3")
    except Exception as exc:
        print(f"BENCHMARK FAILED: the database: {exc}", file=sys.stderr)
        return 2
    world = World(db=db, env=gateway_env(db.url))
    world.env.update(item.partition("=")[::2] for item in args.env)
    try:
        bench = set_up(world, args, plan, shape, kinds)
        if args.serve:
            return 0
        measure(bench, args.only or SECTIONS)
    except (BenchError, OSError) as exc:  # a wrong answer, or a server that hung up or stopped answering
        print(f"BENCHMARK FAILED: {exc!r}", file=sys.stderr)
        return 2
    finally:
        world.tear_down()

    header = machine_description(
        describe_database(db, world.facts), shape.command(args.wsgi), load_before, [kind.name for kind in kinds]
    )
    header.append(f"- Run took {time.monotonic() - started:.0f} s")
    # Only a whole run of production's deployment and the default kinds may replace bench/results.md.
    is_partial = bool(args.only or args.env or args.kind or args.wsgi != "config.wsgi") or not shape.is_production
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    if plan is QUICK:
        title = f"Quick run of {when} (small sizes: targets not meaningful)"
    elif is_partial:
        title = f"Partial or what-if run of {when}"
    else:
        title = f"After: full run of {when}"
    text = render(bench.results, title=title, header=header, method=METHOD)
    print()
    print(text)
    path = WORK / "results-partial.md" if is_partial and plan is FULL else plan.results_path
    write(path, text, keep_before=path == FULL.results_path)
    print(f"written to {path.relative_to(ROOT)}")
    return 1 if args.strict and bench.results.missed else 0


if __name__ == "__main__":
    sys.exit(main())
