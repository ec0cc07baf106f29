from __future__ import annotations

from django.contrib import admin

from files_api.models import AuditEvent, File

admin.site.register(File)
admin.site.register(AuditEvent)
