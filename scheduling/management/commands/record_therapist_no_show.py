"""``manage.py record_therapist_no_show BOOKING_ID --by ADMIN_EMAIL``: support records that the
therapist did not come to a session, after the client complained (and, say, the video room's
join records agree). The booking is cancelled with reason ``therapist_no_show`` and billing
refunds everything, no fee; the audit trail names the admin. A therapist records it themselves
with ``POST /api/v1/bookings/{id}/therapist-no-show``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from api.errors import DomainError
from api.models import Role, User
from scheduling.bookings.services import booking_therapist_no_show


class Command(BaseCommand):
    help = "Record that the therapist did not come to a session (full refund, no fee)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("booking_id", type=uuid.UUID)
        parser.add_argument("--by", required=True, help="the email of the admin recording it")

    def handle(self, *args: Any, **options: Any) -> None:
        admin = User.objects.filter(email__iexact=options["by"], role=Role.ADMIN).first()
        if admin is None or not admin.is_active:
            raise CommandError("--by must name an active admin.")
        try:
            booking = booking_therapist_no_show(
                booking_id=options["booking_id"], by=admin, now=timezone.now()
            )
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from exc
        self.stdout.write(f"booking {booking.pk}: {booking.status} (therapist_no_show)")
