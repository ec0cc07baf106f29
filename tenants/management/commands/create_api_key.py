from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tenants.models import Organization
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for an organisation. The key is printed once, alone on the last line."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["slug"]).first()
        if org is None:
            raise CommandError(f"No organization {options['slug']!r}. Create it with create_org first.")
        issued = api_key_create(organization=org, name=options["name"])
        self.stdout.write(
            f"Created API key {issued.api_key.prefix}… for {org.slug}. Store it now; it is not shown again:"
        )
        self.stdout.write(issued.plaintext)
