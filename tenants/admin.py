from __future__ import annotations

from django.contrib import admin

from tenants.models import ApiKey, Organization, ProviderAccount

admin.site.register(Organization)
admin.site.register(ApiKey)
admin.site.register(ProviderAccount)
