"""``manage.py create_user``: how operators create staff accounts (clients may self-register).

The password comes from an environment variable (``--password-from-env VAR``, for scripts) or
is asked for twice at the terminal; it never appears on the command line. ``--with-totp``
enrols an authenticator app at once and prints its ``otpauth://`` URI this one time.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from api.auditing import audit_event_record
from api.models import Role, User, normalize_email
from api.services.mfa import mfa_totp_enrol_confirmed


class Command(BaseCommand):
    help = "Create a user with a role (staff accounts are created this way)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, help=", ".join(Role.values))
        parser.add_argument("--full-name", default="")
        parser.add_argument(
            "--password-from-env",
            metavar="VAR",
            help="read the password from this environment variable instead of prompting",
        )
        parser.add_argument(
            "--with-totp",
            action="store_true",
            help="enrol a TOTP authenticator and print its otpauth:// URI once",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        role = options["role"]
        if role not in Role.values:
            raise CommandError(f"Unknown role {role!r}: use one of {', '.join(Role.values)}.")
        email = normalize_email(options["email"])
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"{options['email']!r} is not a valid email address.") from exc
        if User.objects.filter(email=email).exists():
            raise CommandError(f"A user with the email {email} already exists.")

        user = User(email=email, role=role, full_name=options["full_name"])
        password = self._password(options["password_from_env"])
        if len(password) > settings.PASSWORD_MAX_LENGTH:
            raise CommandError(
                f"The password is longer than {settings.PASSWORD_MAX_LENGTH} characters."
            )
        try:
            validate_password(password, user=user)
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc

        now = timezone.now()
        with transaction.atomic():
            user = User.objects.create_user(
                email,
                password,
                role=role,
                full_name=options["full_name"],
                is_superuser=role == Role.ADMIN,
                date_joined=now,
            )
            audit_event_record(
                action="auth.user.created",
                actor_label="operator",
                resource_type="user",
                resource_id=str(user.pk),
                details={"role": role, "via": "create_user"},
            )
            uri = mfa_totp_enrol_confirmed(user=user, now=now) if options["with_totp"] else None

        self.stdout.write(f"Created {role} {email} (id {user.pk}).")
        if uri is not None:
            self.stdout.write("Add this to the authenticator app now; it is not shown again:")
            self.stdout.write(uri)
        elif user.is_staff_role:
            self.stdout.write(
                "Staff must enrol a second factor before reaching protected data "
                "(POST /api/v1/auth/mfa/totp after signing in)."
            )

    def _password(self, env_var: str | None) -> str:
        if env_var:
            password = os.environ.get(env_var, "")
            if not password:
                raise CommandError(f"The environment variable {env_var} is unset or empty.")
            return password
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords do not match.")
        if not password:
            raise CommandError("A password is required.")
        return password
