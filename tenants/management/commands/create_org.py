from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from config.errors import GatewayError
from tenants.services import organization_create


class Command(BaseCommand):
    help = "Create an organisation. Limits not given take the settings' defaults."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--storage-quota", type=int, dest="storage_quota_bytes", metavar="BYTES")
        parser.add_argument("--max-file-size", type=int, dest="max_file_size_bytes", metavar="BYTES")
        parser.add_argument("--batch-max-size", type=int, dest="batch_max_size_bytes", metavar="BYTES")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            org = organization_create(
                slug=options["slug"],
                name=options["name"],
                storage_quota_bytes=options["storage_quota_bytes"],
                max_file_size_bytes=options["max_file_size_bytes"],
                batch_max_size_bytes=options["batch_max_size_bytes"],
            )
        except GatewayError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Created organization {org.slug} (quota {org.storage_quota_bytes} bytes, max file "
            f"{org.max_file_size_bytes} bytes, batch max {org.batch_max_size_bytes} bytes)"
        )
