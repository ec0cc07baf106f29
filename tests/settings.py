"""Settings of the test run: the production settings (``DEBUG`` off) with throw-away keys.

``config.settings`` refuses to start without ``SECRET_KEY`` and ``CREDENTIAL_KEYS`` when ``DEBUG`` is
off, so fresh ones are put in the environment (unless set) before it is read; the servers and commands
the tests start in subprocesses inherit them.
"""

from __future__ import annotations

import os
import secrets

from cryptography.fernet import Fernet

os.environ.setdefault("SECRET_KEY", "tests-" + secrets.token_urlsafe(48))
os.environ.setdefault("CREDENTIAL_KEYS", Fernet.generate_key().decode())

from config.settings import *  # noqa: F403
