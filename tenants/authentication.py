"""DRF authentication by gateway API key (``Authorization: Bearer fg_...``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from config.errors import AuthenticationFailed
from tenants.models import ApiKey, Organization
from tenants.services import api_key_authenticate

MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


@dataclass(frozen=True)
class ApiClient:
    """``request.user`` for API calls: the organisation behind the key."""

    organization: Organization
    is_authenticated: bool = True
    is_anonymous: bool = False


class ApiKeyAuthentication(BaseAuthentication):
    """Sets ``request.auth`` to the ``ApiKey`` (with its organisation loaded)."""

    def authenticate(self, request: Any) -> tuple[ApiClient, ApiKey]:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = header.partition(" ")
        if not header or scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed(MISSING_KEY_MESSAGE)
        api_key = api_key_authenticate(plaintext=token.strip())
        return ApiClient(organization=api_key.organization), api_key

    def authenticate_header(self, request: Any) -> str:
        # Without this DRF turns every 401 into a 403.
        return 'Bearer realm="api"'


class HasApiKey(BasePermission):
    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, ApiKey)
