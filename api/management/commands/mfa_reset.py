"""``manage.py mfa_reset``: the identity-proofing path for a user who lost their second factor.

Run by an operator only after the user's identity was proven out of band (say how in
``--reason``: it is kept in the audit trail). Removes the user's devices and backup codes, turns
the second factor off and ends every session; staff must enrol again before reaching protected
data. A password reset never does this (MFA-10).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.models import User, normalize_email
from api.services.mfa import mfa_reset

REASON_MAX_LENGTH = 500


class Command(BaseCommand):
    help = "Remove a user's second factor after proving their identity out of band (audited)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--email", required=True)
        parser.add_argument(
            "--reason",
            required=True,
            help="how the user's identity was proven (ticket, call); kept in the audit trail",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        reason = " ".join(str(options["reason"]).split())
        if not reason:
            raise CommandError("Give the reason: how the user's identity was proven.")
        if len(reason) > REASON_MAX_LENGTH:
            raise CommandError(f"Keep the reason under {REASON_MAX_LENGTH} characters.")
        user = User.objects.filter(email=normalize_email(options["email"])).first()
        if user is None:
            raise CommandError("No user has this email address.")
        removed = mfa_reset(user=user, reason=reason, now=timezone.now())
        self.stdout.write(
            f"Second factor reset for user {user.pk}: {removed} device(s) removed, "
            "every session ended."
        )
        if user.is_staff_role:
            self.stdout.write(
                "This staff account must enrol a new authenticator before reaching protected data."
            )
