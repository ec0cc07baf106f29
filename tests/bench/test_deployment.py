"""bench/deployment.py: the one definition of production's gunicorn command, and what it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import client
import pytest
from cryptography.fernet import Fernet
from deployment import PRODUCTION, Deployment
from processes import HOST, Service, free_port

ROOT = Path(__file__).resolve().parents[2]


def test_production_runs_gevent_workers_with_a_connection_limit() -> None:
    args = PRODUCTION.args()

    assert PRODUCTION.command().startswith("gunicorn config.wsgi --worker-class gevent --workers 4 ")
    assert args[args.index("--worker-connections") + 1] == "1000"
    assert "--threads" not in args
    assert {"--reuse-port", "--keep-alive"} <= set(args)


def test_the_gthread_shape_takes_threads_instead() -> None:
    args = Deployment(worker_class="gthread", threads=4).args()

    assert args[args.index("--threads") + 1] == "4"
    assert "--worker-connections" not in args


def test_only_options_the_worker_class_uses_make_a_what_if() -> None:
    assert Deployment(threads=8).is_production  # gevent ignores threads
    assert not Deployment(workers=2).is_production
    assert not Deployment(worker_class="gthread").is_production


def test_an_unknown_worker_class_is_refused() -> None:
    with pytest.raises(ValueError, match="worker class 'sync'"):
        Deployment(worker_class="sync")


def test_the_script_prints_the_command_the_readme_quotes() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "deployment.py")], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == PRODUCTION.command()
    readme = (ROOT / "README.md").read_text()
    deploy = readme.split("\n## Deploy", 1)[1]
    assert f".venv/bin/{PRODUCTION.command()} --bind 0.0.0.0:8000" in deploy  # what is measured is what is deployed


def test_production_command_serves_the_gateway(tmp_path: Path) -> None:
    """gunicorn starts the application with production's worker class (its package is installed)."""
    port = free_port()
    shape = Deployment(workers=1)  # production's worker class and options, one worker is enough here
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": "test-deployment-secret-key-not-for-production",
        "CREDENTIAL_KEYS": Fernet.generate_key().decode(),  # required with DEBUG off
        "ALLOWED_HOSTS": HOST,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DATA_DIR": str(tmp_path / "data"),
    }
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    args = [gunicorn, *shape.args(), "--bind", f"{HOST}:{port}"]
    service = Service("gunicorn", args, env=env, port=port, cwd=ROOT, logs=tmp_path)
    try:
        service.wait_ready("/healthz")
        status, _ = client.request_json(HOST, port, "GET", "/v1/files", headers={})
        assert status == 401  # the application answers, with its own error envelope
        assert "gevent" in (tmp_path / "gunicorn.log").read_text()
    finally:
        service.stop()
