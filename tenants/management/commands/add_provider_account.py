from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from config.errors import GatewayError
from providers import registry
from tenants.models import Organization
from tenants.services import provider_account_create


class Command(BaseCommand):
    help = "Add a provider account to an organisation. --set KEY=VALUE per setting; VALUE @FILE reads a file."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("name")
        parser.add_argument("--kind", required=True, help=f"one of: {', '.join(registry.PROVIDERS)}")
        parser.add_argument("--default", action="store_true", help="make it the organisation's default account")
        parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_values")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["slug"]).first()
        if org is None:
            raise CommandError(f"No organization {options['slug']!r}. Create it with create_org first.")
        config: dict[str, str] = {}
        for item in options["set_values"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--set needs KEY=VALUE, got {item!r}.")
            if key in config:
                raise CommandError(f"--set {key} given twice.")
            config[key] = _read_value(key, value)
        try:
            account = provider_account_create(
                organization=org,
                name=options["name"],
                kind=options["kind"],
                config=config,
                is_default=options["default"],
            )
        except GatewayError as exc:
            raise CommandError(exc.message) from None
        default = " (default)" if account.is_default else ""
        self.stdout.write(f"Added {account.kind} account {account.name} to {org.slug}{default}")


def _read_value(key: str, value: str) -> str:
    if not value.startswith("@"):
        return value
    try:
        return Path(value[1:]).read_text().strip()
    except OSError as exc:
        raise CommandError(f"--set {key}=@FILE: cannot read {value[1:]}: {exc.strerror}") from None
