"""URLs: the API under /v1, OpenAPI docs, health checks and the admin (with its set-password links)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path, reverse_lazy
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import errors


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The process can reach its database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any database failure means not ready
        return JsonResponse({"status": "unavailable", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def unknown_api_url(request: HttpRequest, rest: str = "") -> JsonResponse:
    # Django's DEBUG 404 page is HTML; under /v1 every answer must be the JSON envelope.
    return errors.handler404(request)


urlpatterns = [
    path("v1/", include("files_api.urls")),
    # JSON whatever the Accept header says: the path promises JSON.
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema", template_name="files_api/redoc.html"), name="redoc"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    # The one-time link `create_org_admin` prints: set a password, and be logged in to the admin.
    path(
        "admin/set-password/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            post_reset_login=True,
            # Two backends (axes, then the model backend): say which one the new session belongs to.
            post_reset_login_backend="django.contrib.auth.backends.ModelBackend",
            success_url=reverse_lazy("admin:index"),
            extra_context={"site_header": admin.site.site_header, "site_title": admin.site.site_title},
        ),
        name="password_reset_confirm",
    ),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(pattern_name="swagger-ui"), name="home"),
    re_path(r"^v1(?P<rest>/.*)?$", unknown_api_url),
]

handler400 = "config.errors.handler400"
handler403 = "config.errors.handler403"
handler404 = "config.errors.handler404"
handler500 = "config.errors.handler500"
