"""Processes the benchmark starts (stopped by their PID), and what it samples of them: memory and CPU."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import client
import psutil

HOST = "127.0.0.1"


class BenchError(Exception):
    """A wrong answer (status, size, checksum) or a service that did not start: the run is invalid."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class Service:
    """A process the benchmark started: logged to a file, stopped by its PID."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], port: int, cwd: Path, logs: Path) -> None:
        self.name = name
        self.port = port
        self.log_path = logs / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if client.status_of(HOST, self.port, path) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer {path} within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (gunicorn's master stops its own workers), then SIGKILL for whatever is left of the tree."""
        children = []
        with suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.pid).children(recursive=True)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        # A worker stuck in a blocking call outlives a master that had to be killed.
        _, alive = psutil.wait_procs(children, timeout=5)
        for child in alive:
            with suppress(psutil.NoSuchProcess):
                child.kill()
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
