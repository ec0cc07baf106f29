from __future__ import annotations

import dataclasses
import json
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from config.errors import InvalidRequest
from files_api.reconciliation import CATEGORIES, Finding, Summary, reconcile_files


class Command(BaseCommand):
    help = (
        "Compare the file records with what the providers and buckets hold, and each organisation's usage "
        "with its live files. Changes nothing unless --fix. Exits with status 1 if an account could not be "
        "checked. Run it from cron."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--org", metavar="SLUG", help="only this organisation")
        parser.add_argument(
            "--account",
            metavar="NAME",
            help="only the provider accounts with this name (and their organisations' usage)",
        )
        parser.add_argument(
            "--fix",
            action="store_true",
            help="repair what is safe: forget records of files gone at the provider, clear missing marks of "
            "files found again, delete orphaned objects in the organisation's folder, release stale "
            "reservations, recount usage",
        )
        parser.add_argument("--json", action="store_true", help="one JSON object per line: findings, then a summary")

    def handle(self, *args: Any, **options: Any) -> None:
        self.as_json = options["json"]
        try:
            summary = reconcile_files(
                organization=options["org"], account=options["account"], fix=options["fix"], on_finding=self.show
            )
        except InvalidRequest as exc:
            raise CommandError(exc.message) from None
        self.show_summary(summary)
        if summary.errors:
            raise CommandError(f"{summary.errors} error(s): see the 'error' lines.", returncode=1)

    def show(self, finding: Finding) -> None:
        if self.as_json:
            self.stdout.write(json.dumps({"type": "finding", **dataclasses.asdict(finding)}))
            return
        where = f"{finding.organization}/{finding.account}" if finding.account else finding.organization
        size = f" ({finding.bytes} bytes)" if finding.bytes is not None else ""
        action = f"  -> {finding.action}" if finding.action else ""
        self.stdout.write(f"{finding.category:<17} {where}  {finding.subject}{size}: {finding.detail}{action}")

    def show_summary(self, summary: Summary) -> None:
        if self.as_json:
            fields = {
                name: getattr(summary, name) for name in ("fix", "organizations", "accounts", "records", "listed")
            }
            found = {category: summary.found[category] for category in CATEGORIES}
            fixed = {category: summary.fixed[category] for category in CATEGORIES}
            self.stdout.write(
                json.dumps({"type": "summary", **fields, "missing": summary.missing, "found": found, "fixed": fixed})
            )
            return
        self.stdout.write(
            f"Checked {summary.organizations} organisation(s), {summary.accounts} account(s): {summary.records} "
            f"live record(s) ({summary.missing} marked missing), {summary.listed} file(s) and object(s) listed."
        )
        self.stdout.write(f"Found: {_counts(summary.found) or 'nothing to reconcile'}.")
        if summary.fix:
            self.stdout.write(f"Fixed: {_counts(summary.fixed) or 'nothing'}.")
        elif summary.found:
            self.stdout.write("Nothing was changed: run with --fix to repair what is safe.")


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{counter[category]} {category}" for category in CATEGORIES if counter[category])
