from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from files_api.services import file_purge_expired
from tenants.services import quota_reclaim_stale


class Command(BaseCommand):
    help = "Delete expired files (records and stored objects) and release their quota. Run it from cron."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="list what would be purged, change nothing")
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run = options["dry_run"]
        files = file_purge_expired(batch_size=options["batch_size"], dry_run=dry_run)
        verb = "Would purge" if dry_run else "Purged"
        for file in files:
            self.stdout.write(f"{verb} {file.public_id} ({file.organization.slug}, {file.bytes} bytes)")
        reclaimed = 0 if dry_run else quota_reclaim_stale()
        self.stdout.write(f"{verb} {len(files)} expired file(s); released {reclaimed} stale quota reservation(s).")
