from __future__ import annotations

from django.apps import AppConfig


class FilesApiConfig(AppConfig):
    name = "files_api"
    verbose_name = "Files"
