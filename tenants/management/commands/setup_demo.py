from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from config.errors import AuthenticationFailed
from tenants.models import Organization, ProviderAccount
from tenants.services import api_key_authenticate, api_key_create, organization_create, provider_account_create

DEMO_SLUG = "demo"


class Command(BaseCommand):
    help = (
        "Create (once) a demo organisation with a default local account and an API key, and print the key "
        "with working examples. Safe to run again: it reuses what exists. For development only."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            # It keeps the demo key in plain text in DATA_DIR: never on a production box.
            raise CommandError("setup_demo is for development only: run it with DEBUG=true (make run does).")
        org = Organization.objects.filter(slug=DEMO_SLUG).first() or organization_create(slug=DEMO_SLUG, name="Demo")
        if not ProviderAccount.objects.filter(organization=org).exists():
            provider_account_create(organization=org, name="local", kind="local", config={}, is_default=True)
        key = self._demo_key(org)
        base = options["base_url"].rstrip("/")
        self.stdout.write(
            f"""
filegate demo is ready. Organisation: {org.slug}; default provider account: local (files under {settings.DATA_DIR}).

  API key:  {key}

  curl -s {base}/v1/files -H "Authorization: Bearer {key}" \\
       -F purpose=assistants -F file=@README.md
  curl -s {base}/v1/files -H "Authorization: Bearer {key}"

  python -c "import openai; c = openai.OpenAI(base_url='{base}/v1', api_key='{key}'); \\
print(c.files.create(file=open('README.md', 'rb'), purpose='assistants'))"

  API docs: {base}/docs/   Redoc: {base}/redoc/   Admin: {base}/admin/ (python manage.py createsuperuser)
"""
        )

    def _demo_key(self, org: Organization) -> str:
        # Keys are stored hashed, so the demo key's plaintext is kept in the data folder (mode 0600)
        # to print it on every `make run`. Real keys are shown once and never stored.
        path = Path(settings.DATA_DIR) / "demo-api-key"
        if path.exists():
            plaintext = path.read_text().strip()
            try:
                if api_key_authenticate(plaintext=plaintext).organization_id == org.pk:
                    return plaintext
            except AuthenticationFailed:
                pass
        issued = api_key_create(organization=org, name="demo")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(issued.plaintext + "\n")
        os.chmod(path, 0o600)
        return issued.plaintext
