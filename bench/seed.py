"""Direct database work for the benchmark, run with the gateway's own environment.

``seed``: give an organisation's account N file records at once (bulk_create), so that listing an
organisation holding 10,000 files needs no 10,000 uploads. The records point at no object: list
never reads the bytes. ``cleanup``: delete the benchmark's organisations (on a shared PostgreSQL).

    DJANGO_SETTINGS_MODULE=config.settings python bench/seed.py seed --org bench-list --account disk --count 10000
    DJANGO_SETTINGS_MODULE=config.settings python bench/seed.py cleanup --org bench-1 --org bench-list
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

django.setup()

from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from files_api.models import AuditEvent, File  # noqa: E402
from providers.base import mint_file_id  # noqa: E402
from tenants.models import Organization, ProviderAccount  # noqa: E402


def seed(*, org_slug: str, account_name: str, count: int) -> None:
    account = ProviderAccount.objects.select_related("organization").get(organization__slug=org_slug, name=account_name)
    org = account.organization
    start = timezone.now() - timedelta(seconds=count)
    rows = []
    for index in range(count):
        public_id = mint_file_id()
        rows.append(
            File(
                public_id=public_id,
                organization=org,
                provider_account=account,
                storage_key=f"{org.slug}/{public_id}",
                filename=f"seed-{index:05d}.jsonl",
                purpose="batch" if index % 2 else "assistants",
                bytes=1024,
                status="processed",
                created_at=start + timedelta(milliseconds=index * 7),
            )
        )
    with transaction.atomic():
        File.objects.bulk_create(rows, batch_size=1000)
    print(f"seeded {count} file records into {org_slug}/{account_name}")


def cleanup(*, org_slugs: list[str]) -> None:
    with transaction.atomic():
        orgs = Organization.objects.filter(slug__in=org_slugs)
        AuditEvent.objects.filter(organization__in=orgs).delete()
        File.objects.filter(organization__in=orgs).delete()
        deleted, _ = orgs.delete()
    print(f"deleted {deleted} rows of benchmark organisations {', '.join(org_slugs)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("--org", required=True)
    seed_parser.add_argument("--account", required=True)
    seed_parser.add_argument("--count", type=int, required=True)
    cleanup_parser = sub.add_parser("cleanup")
    cleanup_parser.add_argument("--org", action="append", required=True)
    args = parser.parse_args()
    if args.command == "seed":
        seed(org_slug=args.org, account_name=args.account, count=args.count)
    else:
        cleanup(org_slugs=args.org)


if __name__ == "__main__":
    main()
