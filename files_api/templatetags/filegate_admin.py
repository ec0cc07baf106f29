"""``{% organization_overview %}``: the per-organisation overview at the top of the admin index."""

from __future__ import annotations

from typing import Any

from django import template

from files_api.admin import overview_context

register = template.Library()


@register.inclusion_tag("admin/filegate_overview.html", takes_context=True)
def organization_overview(context: dict[str, Any]) -> dict[str, Any]:
    return overview_context(context["request"])
