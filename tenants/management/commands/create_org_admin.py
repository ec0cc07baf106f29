from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tenants.models import Organization
from tenants.services import org_admin_add


class Command(BaseCommand):
    help = (
        "Make USERNAME an admin of organisation SLUG in Django admin: creates the user (or attaches an "
        "existing one), makes them staff and a member of SLUG, and prints a one-time link to set a password."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("slug")
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="where the gateway is reached, for the printed link (default: http://127.0.0.1:8000, as make run)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        org = Organization.objects.filter(slug=options["slug"]).first()
        if org is None:
            raise CommandError(f"No organization {options['slug']!r}. Create it with create_org first.")
        with transaction.atomic():
            user, created = self._user(options["username"], options["email"])
            org_admin_add(organization=org, user=user)
        verb = "Created" if created else "Attached"
        self.stdout.write(f"{verb} staff user {user.get_username()}, an admin of organisation {org.slug}.")
        if user.is_superuser:
            self.stdout.write("They are a superuser: they see every organisation anyway.")
        if user.has_usable_password():
            self.stdout.write(f"They log in with their existing password at {options['base_url'].rstrip('/')}/admin/.")
            return
        link = options["base_url"].rstrip("/") + reverse(
            "password_reset_confirm",
            kwargs={
                "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                "token": default_token_generator.make_token(user),
            },
        )
        hours = settings.PASSWORD_RESET_TIMEOUT // 3600
        self.stdout.write(f"Send them this link to set their password (it works once, within {hours} hours):")
        self.stdout.write(link)

    def _user(self, username: str, email: str) -> tuple[Any, bool]:
        user_model = get_user_model()
        user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
        if user is not None:
            if email and user.email and user.email != email:
                raise CommandError(f"{username} already has the email address {user.email}; change it in admin.")
            if email and not user.email:
                user.email = email
                user.save(update_fields=["email"])
            return user, False
        user = user_model(**{user_model.USERNAME_FIELD: username}, email=email, is_staff=True)
        # No password until they set one through the link: nobody, the operator included, ever knows it.
        user.set_unusable_password()
        try:
            user.full_clean()
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{field}: {' '.join(errors)}" for field, errors in exc.message_dict.items())
            ) from None
        user.save()
        return user, True
