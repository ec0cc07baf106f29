"""Delete the benchmark's organisations, with their files and audit trail, from a shared database.

Run with the gateway's own environment, when the run worked in a PostgreSQL database it did not
create (see ``bench/database.py``):

    DJANGO_SETTINGS_MODULE=config.settings python bench/cleanup.py --org bench-1 --org bench-1-small
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django

django.setup()

from django.db import transaction  # noqa: E402

from files_api.models import AuditEvent, File  # noqa: E402
from tenants.models import Organization  # noqa: E402


def cleanup(*, org_slugs: list[str]) -> None:
    with transaction.atomic():
        orgs = Organization.objects.filter(slug__in=org_slugs)
        AuditEvent.objects.filter(organization__in=orgs).delete()
        # Records protect their provider accounts: they go before the organisations do.
        File.objects.filter(organization__in=orgs).delete()
        deleted, _ = orgs.delete()
    print(f"deleted {deleted} rows of benchmark organisations {', '.join(org_slugs)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--org", action="append", required=True)
    cleanup(org_slugs=parser.parse_args().org)


if __name__ == "__main__":
    main()
