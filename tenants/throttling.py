"""DRF throttling by API key: every request counts against the key's request limit, uploads and
downloads against their own limits too (``tenants.ratelimits``)."""

from __future__ import annotations

from typing import Any

from rest_framework.throttling import BaseThrottle

from tenants.models import ApiKey
from tenants.ratelimits import REQUESTS, rate_limit_admit


class ApiKeyRateThrottle(BaseThrottle):
    """Runs in DRF's ``check_throttles``: after authentication and permissions, before the view.

    A view names the scope of its actions in ``throttle_scopes`` (``{"create": UPLOADS}``); every
    action also counts as a request. Requests without a key (the schema, the docs) are not counted.

    A refusal raises ``RateLimited`` rather than returning False: DRF's own ``Throttled`` could not
    say which limit the key reached.
    """

    def allow_request(self, request: Any, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        scope = getattr(view, "throttle_scopes", {}).get(getattr(view, "action", None))
        # The narrower scope first: a refused upload then costs no request of the key's minute.
        rate_limit_admit(api_key=api_key, scopes=(scope, REQUESTS) if scope else (REQUESTS,))
        return True
