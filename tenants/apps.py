from __future__ import annotations

from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from tenants import schema  # noqa: F401 - registers the OpenAPI description of our auth
        from tenants.models import ApiKey
        from tenants.services import api_key_forget_deleted

        # A key deleted through the ORM (admin, a cascade from its organisation) leaves the key cache at once.
        post_delete.connect(api_key_forget_deleted, sender=ApiKey, dispatch_uid="tenants.api_key_forget_deleted")
