"""The production deployment, defined once: the gunicorn command line the README quotes and the bench runs.

``python bench/deployment.py`` prints the default command (what the README's deploy section shows,
followed by ``--bind``); ``--worker-class gthread`` and the other flags print a what-if shape.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

WORKER_CLASSES = ("gevent", "gthread")


@dataclass(frozen=True)
class Deployment:
    """gunicorn's options for filegate. Everything but the bind address, which each caller adds.

    ``gevent`` (the default) runs one event loop per worker: a client that sends slowly, or a
    keep-alive connection waiting for its next request, costs a greenlet rather than a thread, and
    ``worker_connections`` bounds how many each worker serves at once. ``gthread`` runs ``threads``
    requests at once per worker.
    """

    worker_class: str = "gevent"
    workers: int = 4
    threads: int = 2  # gthread only
    worker_connections: int = 1000  # gevent only
    keep_alive_seconds: int = 5  # the SDKs keep idle connections about this long; a half-sent request waits no longer

    def __post_init__(self) -> None:
        if self.worker_class not in WORKER_CLASSES:
            raise ValueError(f"worker class {self.worker_class!r}: expected one of {', '.join(WORKER_CLASSES)}")

    def args(self, wsgi: str = "config.wsgi") -> list[str]:
        """gunicorn's arguments after the program name, without ``--bind``."""
        args = [wsgi, "--worker-class", self.worker_class, "--workers", str(self.workers)]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        else:
            args += ["--worker-connections", str(self.worker_connections)]
        args += [
            "--keep-alive",
            str(self.keep_alive_seconds),
            # One listening socket per worker: the kernel spreads connections over the workers
            # instead of letting whichever wakes first accept a whole burst of them.
            "--reuse-port",
        ]
        if self.worker_class == "gthread":
            # A thread is busy for as long as its client sends: never kill a worker for that.
            args += ["--timeout", "0"]
        return args

    def command(self, wsgi: str = "config.wsgi") -> str:
        """The command line as the README shows it (without ``--bind``)."""
        return " ".join(["gunicorn", *self.args(wsgi)])

    @property
    def is_production(self) -> bool:
        """True when the command is production's (options the worker class ignores do not count)."""
        return self.args() == Deployment().args()


PRODUCTION = Deployment()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that change the deployment for a what-if run; defaults are production's."""
    parser.add_argument("--worker-class", choices=WORKER_CLASSES, default=PRODUCTION.worker_class)
    parser.add_argument("--workers", type=int, default=PRODUCTION.workers)
    parser.add_argument("--threads", type=int, default=PRODUCTION.threads, help="gthread: threads per worker")
    parser.add_argument(
        "--worker-connections",
        type=int,
        default=PRODUCTION.worker_connections,
        help="gevent: clients each worker serves at once",
    )
    parser.add_argument("--keep-alive", type=int, default=PRODUCTION.keep_alive_seconds, metavar="SECONDS")


def from_arguments(args: argparse.Namespace) -> Deployment:
    return Deployment(
        worker_class=args.worker_class,
        workers=args.workers,
        threads=args.threads,
        worker_connections=args.worker_connections,
        keep_alive_seconds=args.keep_alive,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Print the gunicorn command line of the deployment.")
    add_arguments(parser)
    print(from_arguments(parser.parse_args()).command())
