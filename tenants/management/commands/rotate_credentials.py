from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from tenants import crypto
from tenants.models import ProviderAccount


class Command(BaseCommand):
    help = (
        "Re-encrypt every provider account's secrets with the first key of CREDENTIAL_KEYS. "
        "Run it after putting a new key first; then the old keys can be removed."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = failed = 0
        for account in ProviderAccount.objects.exclude(secrets_encrypted="").iterator():
            try:
                token = crypto.rotate(account.secrets_encrypted)
            except ImproperlyConfigured:
                failed += 1
                self.stderr.write(f"{account}: no key in CREDENTIAL_KEYS decrypts its secrets")
                continue
            ProviderAccount.objects.filter(pk=account.pk).update(secrets_encrypted=token)
            rotated += 1
        self.stdout.write(f"Re-encrypted the secrets of {rotated} provider account(s).")
        if failed:
            raise CommandError(f"{failed} account(s) could not be decrypted; keep their old key until they are fixed.")
