"""What the per-key rate limit costs a request, in-process (no sockets): CPU microseconds.

    .venv/bin/python bench/ratelimit_cost.py                      # SQLite
    DATABASE_URL=postgres://... .venv/bin/python bench/ratelimit_cost.py

Measures, with ``time.process_time`` (this process's CPU; a PostgreSQL server's own is not included):
- the check of a request served from the process's lease (``rate_limit_admit``, no query);
- one lease taken from the database (the conditional UPDATE);
- what a request pays at the default limits (the check plus its share of a lease);
- a retrieve through the whole WSGI application: its CPU, and its Python function calls with the
  limit on and off.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

from profile_requests import Call, call, configure, upload_call  # a sibling script: run as bench/ratelimit_cost.py


def cpu_per_call(function: Callable[[], object], repeat: int) -> float:
    """Microseconds of this process's CPU per call."""
    started = time.process_time()
    for _ in range(repeat):
        function()
    return (time.process_time() - started) / repeat * 1e6


def main() -> None:
    work = Path(__file__).resolve().parent / ".work"
    work.mkdir(exist_ok=True)
    configure(os.environ.get("DATABASE_URL") or f"sqlite:///{work / 'ratelimit-cost.sqlite3'}")
    for scope in ("REQUESTS", "UPLOADS", "DOWNLOADS"):
        os.environ.pop(f"RATE_LIMIT_{scope}_PER_MINUTE", None)  # the defaults, for the lease they make

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)

    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connection

    from tenants import ratelimits
    from tenants.models import ApiKey, Organization
    from tenants.services import api_key_cache_clear, api_key_create, organization_create, provider_account_create

    org = organization_create(slug=f"ratelimit-cost-{time.time_ns()}")
    provider_account_create(organization=org, name="disk", kind="local", config={}, is_default=True)
    issued = api_key_create(organization=org)
    api_key = ApiKey.objects.select_related("organization").get(pk=issued.api_key.pk)
    print(f"database: {connection.vendor}")

    # A limit no run reaches, so that every request below is served from the lease.
    Organization.objects.filter(pk=org.pk).update(requests_per_minute=10**9, uploads_per_minute=10**9)
    api_key.organization.refresh_from_db()
    admit = lambda: ratelimits.rate_limit_admit(api_key=api_key, scopes=(ratelimits.REQUESTS,))  # noqa: E731
    admit()
    check = cpu_per_call(admit, 200_000)
    both = cpu_per_call(lambda: ratelimits.rate_limit_admit(api_key=api_key, scopes=("uploads", "requests")), 200_000)

    window = ratelimits.window_of(time.time())
    lease = lambda: ratelimits.lease_take(  # noqa: E731
        api_key_id=api_key.pk, scope="downloads", window=window, limit=10**12, size=1
    )
    lease()
    write = cpu_per_call(lease, 3_000)
    default_lease = max(1, settings.RATE_LIMIT_REQUESTS_PER_MINUTE // settings.RATE_LIMIT_LEASE_DIVISOR)

    app = get_wsgi_application()
    headers = {"Authorization": f"Bearer {issued.plaintext}"}
    status, body = call(app, upload_call(headers, 0))
    assert status == 200, body
    path = f"/v1/files/{json.loads(body)['id']}"
    get = lambda: call(app, Call("GET", path, headers))  # noqa: E731
    # A difference of a microsecond or two is lost in a whole request's CPU on a shared machine, so the
    # whole-request comparison counts Python function calls instead: exact, and the same on every run.
    calls: dict[str, float] = {}
    for label, limit in (("on", 10**9), ("off", 0)):
        Organization.objects.filter(pk=org.pk).update(requests_per_minute=limit)
        api_key_cache_clear()
        for _ in range(200):
            assert get()[0] == 200
        profile = cProfile.Profile()
        profile.runcall(lambda: [get() for _ in range(1_000)])
        calls[label] = pstats.Stats(profile).total_calls / 1_000
    retrieve = cpu_per_call(get, 3_000)

    print(f"check served from the lease: {check:.2f} us (requests scope), {both:.2f} us (upload: two scopes)")
    print(f"one lease from the database (conditional UPDATE): {write:.0f} us")
    print(
        f"at the default limits (lease of {default_lease} requests): {check + write / default_lease:.2f} us per request"
    )
    print(
        f"retrieve through WSGI: {retrieve:.0f} us of CPU per request; function calls per request "
        f"{calls['on']:.0f} with the limit, {calls['off']:.0f} without"
    )


if __name__ == "__main__":
    main()
