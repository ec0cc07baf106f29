"""Encryption of provider credentials at rest (Fernet, with key rotation).

``settings.CREDENTIAL_KEYS`` lists Fernet keys: the first encrypts, every one decrypts. Without it a
key is derived from ``SECRET_KEY``, which suits development but ties the credentials to that key.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        derived = base64.urlsafe_b64encode(hashlib.sha256(f"filegate-credentials:{secret_key}".encode()).digest())
        return MultiFernet([Fernet(derived)])
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        raise ImproperlyConfigured(
            "CREDENTIAL_KEYS must be url-safe base64 Fernet keys (Fernet.generate_key())."
        ) from None


def _current() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIAL_KEYS), settings.SECRET_KEY)


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt with any configured key; raise ``ImproperlyConfigured`` if none fits."""
    try:
        return _decrypt(_current(), token)
    except InvalidToken:
        raise ImproperlyConfigured(
            "A provider credential cannot be decrypted with any key in CREDENTIAL_KEYS."
        ) from None


# Every request through a provider account decrypts its credentials (~30 µs of HMAC and AES): keep
# the last answers per key set. Refusals are not kept, and a changed key set starts afresh.
@lru_cache(maxsize=1024)
def _decrypt(fernet: MultiFernet, token: str) -> str:
    return fernet.decrypt(token.encode()).decode()


def rotate(token: str) -> str:
    """Re-encrypt ``token`` with the first (newest) key; raise ``ImproperlyConfigured`` if no key fits."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "A provider credential cannot be decrypted with any key in CREDENTIAL_KEYS."
        ) from None
