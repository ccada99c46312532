"""``manage.py seed_demo``: demo accounts (and, as apps grow, their data) for a development box.

Runs only with ``DJANGO_DEBUG=1``: the accounts share a published password. Idempotent: each
step looks its rows up by a natural key and creates only what is missing, so ``make run`` can
call it every time and a second run changes nothing.

To extend it, write a step ``def seed_<area>(demo: Demo) -> None`` next to your app's services
(e.g. ``scheduling/demo.py``) that finds-or-creates its rows through the app's services, using
``demo.users`` (the people below, by key) and ``demo.now``; append it to ``SEED_STEPS``, and add
what a developer needs to know to ``demo.notes``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from api.models import Role, TOTPDevice, User
from api.services.mfa import mfa_totp_enrol_confirmed
from audit.services import audit_record
from messaging.demo import seed_messaging
from scheduling.bookings.demo import seed_bookings
from scheduling.demo import seed_scheduling
from video.demo import seed_video

# Published on purpose, and refused outside DEBUG: these accounts exist only on a developer box.
DEMO_PASSWORD = "demo-only-not-a-secret"  # noqa: S105


@dataclass(frozen=True)
class DemoPerson:
    key: str
    role: Role
    full_name: str

    @property
    def email(self) -> str:
        return f"{self.key}@example.test"  # RFC 6761: .test never resolves


PEOPLE = (
    DemoPerson("therapist1", Role.THERAPIST, "Demo Therapist One"),
    DemoPerson("therapist2", Role.THERAPIST, "Demo Therapist Two"),
    DemoPerson("therapist3", Role.THERAPIST, "Demo Therapist Three"),
    DemoPerson("client1", Role.CLIENT, "Demo Client One"),
    DemoPerson("client2", Role.CLIENT, "Demo Client Two"),
    DemoPerson("client3", Role.CLIENT, "Demo Client Three"),
    DemoPerson("compliance", Role.COMPLIANCE_OFFICER, "Demo Compliance Officer"),
    DemoPerson("admin", Role.ADMIN, "Demo Admin"),
)


@dataclass
class Demo:
    """What the steps share: the clock, the demo users by key, and notes for the summary."""

    now: datetime
    users: dict[str, User] = field(default_factory=dict)
    new_totp_uris: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def seed_people(demo: Demo) -> None:
    """The demo accounts; staff get a confirmed authenticator (TOTP) as their role requires."""
    for person in PEOPLE:
        user = User.objects.filter(email=person.email).first()
        if user is None:
            user = User.objects.create_user(
                person.email,
                DEMO_PASSWORD,
                role=person.role,
                full_name=person.full_name,
                is_superuser=person.role == Role.ADMIN,
                date_joined=demo.now,
            )
            audit_record(
                action="auth.user.created",
                actor_label="operator",
                resource_type="user",
                resource_id=str(user.pk),
                details={"role": person.role.value, "via": "seed_demo"},
            )
        if user.is_staff_role and not TOTPDevice.objects.filter(user=user, confirmed=True).exists():
            demo.new_totp_uris[person.key] = mfa_totp_enrol_confirmed(user=user, now=demo.now)
        demo.users[person.key] = user


SEED_STEPS: tuple[Callable[[Demo], None], ...] = (
    seed_people,
    seed_scheduling,
    seed_bookings,
    seed_video,
    seed_messaging,
)


def totp_secret(user: User) -> str:
    """The base32 secret of the user's authenticator, for manual entry in an app."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    return base64.b32encode(device.key).decode("ascii").rstrip("=")


class Command(BaseCommand):
    help = "Create the demo accounts and data (DEBUG only; safe to run again)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError(
                "seed_demo creates accounts with a published password, so it runs only on a "
                "development box (DJANGO_DEBUG=1, as `make run` sets)."
            )
        demo = Demo(now=timezone.now())
        with transaction.atomic():
            for step in SEED_STEPS:
                step(demo)
        self._print_summary(demo)

    def _print_summary(self, demo: Demo) -> None:
        out = self.stdout.write
        out(
            self.style.SUCCESS(
                "Demo data is ready (development only: fake people, shared password)."
            )
        )
        out(f"Password of every demo account: {DEMO_PASSWORD}")
        out("")
        out(f"  {'role':<20} {'email':<28} TOTP secret (staff sign in with a code)")
        for user in demo.users.values():
            secret = totp_secret(user) if user.is_staff_role else "-"
            out(f"  {user.role:<20} {user.email:<28} {secret}")
        if demo.new_totp_uris:
            out("")
            out("New authenticators this run (add them to an authenticator app):")
            for key, uri in demo.new_totp_uris.items():
                out(f"  {key}: {uri}")
        out("")
        out('Sign in: POST /api/v1/auth/token {"email": ..., "password": ...}')
        out('  staff: then POST /api/v1/auth/mfa/verify {"mfa_token": ..., "code": "123456"}')
        out("  send the access token as `Authorization: Bearer <access>`.")
        out("API docs: /api/docs/ (Swagger UI), /api/redoc/, and openapi.yaml in the repository.")
        for note in demo.notes:
            out(note)
