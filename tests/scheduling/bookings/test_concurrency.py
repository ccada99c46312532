"""Never a double booking, whatever the concurrency (PostgreSQL, real connections).

Threads each open their own database connection (Django keeps one per thread) and book the
same slot through the booking service at the same moment (a barrier releases them together).
Exactly one wins; every other one is refused with a 409 and writes nothing. The exclusion
constraint is also checked on its own: a raw overlapping insert that skips the services is
refused by the database.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from api.errors import DomainError
from audit.models import AuditEvent
from scheduling.bookings import services
from scheduling.bookings.db import CONSTRAINT
from scheduling.models import (
    Booking,
    BookingNotification,
    BookingStatus,
    BookingTransition,
    SessionType,
)
from tests.concurrency import run_at_once
from tests.factories import make_user
from tests.scheduling.bookings.conftest import NOW, open_starts, session_type_of
from tests.scheduling.conftest import make_booking, make_therapist

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CONTENDERS = 50


def _free_connections() -> int:
    """Connection slots PostgreSQL still has for ordinary roles."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
            " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
        )
        return cursor.fetchone()[0]


def _race(fn, arguments):
    """Run ``fn(arg)`` for each argument in its own thread, all released at once.

    Each thread needs its own connection: when the server has too few left (other programs on
    the machine hold them), say so plainly instead of failing with a thread's connect error.
    """
    free = _free_connections()
    assert free > len(arguments), (
        f"PostgreSQL has {free} free connections; this race needs {len(arguments) + 1}. "
        "Close other clients of the server or raise max_connections."
    )
    results = run_at_once(lambda i: fn(arguments[i]), len(arguments))
    crashed = [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, DomainError)
    ]
    assert crashed == [], crashed
    return results


def test_fifty_clients_racing_for_one_slot_get_one_booking_and_49_conflicts():
    profile = make_therapist()
    slot = open_starts(profile)[0]
    session_type = session_type_of(profile)
    clients = [make_user() for _ in range(CONTENDERS)]
    audit_before = AuditEvent.objects.count()

    def attempt(client):
        return services.booking_create(
            client=client,
            therapist_id=profile.pk,
            session_type_id=session_type.pk,
            start=slot,
            jurisdiction="US-NY",
            now=NOW,
        )

    results = _race(attempt, clients)
    winners = [r for r in results if isinstance(r, Booking)]
    losers = [r for r in results if isinstance(r, DomainError)]
    assert len(winners) == 1
    assert Counter((e.status_code, e.code) for e in losers) == {
        (409, "slot_unavailable"): CONTENDERS - 1
    }
    # Nothing else written: one booking, one transition, one audit event, two emails queued.
    assert list(Booking.objects.values_list("pk", flat=True)) == [winners[0].pk]
    assert BookingTransition.objects.count() == 1
    assert AuditEvent.objects.count() - audit_before == 1
    assert BookingNotification.objects.count() == 2


def test_racing_reschedules_and_bookings_for_one_slot_leave_one_owner():
    """A reschedule onto a slot races new bookings for it: still exactly one owner."""
    profile = make_therapist()
    first, *rest = open_starts(profile)
    target = rest[4]
    movers = []
    for start in rest[8:18:2]:  # an hour apart: no two overlap
        client = make_user()
        booking = services.booking_create(
            client=client,
            therapist_id=profile.pk,
            session_type_id=session_type_of(profile).pk,
            start=start,
            jurisdiction="US-NY",
            now=NOW,
        )
        movers.append((client, booking))
    bookers = [make_user() for _ in range(20)]

    def attempt(who):
        kind, payload = who
        if kind == "move":
            client, booking = payload
            return services.booking_reschedule(
                booking_id=booking.pk, by=client, start=target, now=NOW
            )
        return services.booking_create(
            client=payload,
            therapist_id=profile.pk,
            session_type_id=session_type_of(profile).pk,
            start=target,
            jurisdiction="US-NY",
            now=NOW,
        )

    results = _race(attempt, [("move", m) for m in movers] + [("book", b) for b in bookers])
    [winner] = [r for r in results if isinstance(r, Booking)]
    assert Booking.objects.filter(start=target).exclude(status=BookingStatus.CANCELLED).count() == 1
    for _, booking in movers:  # a mover that lost is where it was
        expected = target if booking.pk == winner.pk else booking.start
        assert Booking.objects.get(pk=booking.pk).start == expected


def test_the_exclusion_constraint_refuses_an_overlap_that_skips_the_services():
    profile = make_therapist()
    slot = open_starts(profile)[0]
    a, b = make_user(), make_user()
    make_booking(therapist=profile, client=a, start=slot)
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        make_booking(therapist=profile, client=b, start=slot + timedelta(minutes=49))
    assert CONSTRAINT in str(refused.value)
    # Touching ranges do not overlap ([start, end)), cancelled rows and holds count as stated.
    make_booking(therapist=profile, client=b, start=slot + timedelta(minutes=50))
    make_booking(
        therapist=profile,
        client=b,
        start=slot - timedelta(minutes=25),
        status=BookingStatus.CANCELLED,
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        make_booking(
            therapist=profile,
            client=b,
            start=slot - timedelta(minutes=25),
            status=BookingStatus.HELD,
            hold_expires_at=NOW,
        )
    # Another therapist's calendar is independent.
    other = make_therapist()
    assert make_booking(therapist=other, client=b, start=slot)


def test_an_expired_hold_is_cancelled_before_the_insert_so_the_constraint_allows_the_slot():
    """The constraint cannot read the clock: the service cancels the expired hold first."""
    profile = make_therapist()
    slot = open_starts(profile)[0]
    stale = make_booking(
        therapist=profile,
        client=make_user(),
        start=slot,
        status=BookingStatus.HELD,
        hold_expires_at=NOW - timedelta(minutes=1),
    )
    booking = services.booking_create(
        client=make_user(),
        therapist_id=profile.pk,
        session_type_id=SessionType.objects.get(therapist=profile).pk,
        start=slot,
        jurisdiction="US-NY",
        now=NOW,
    )
    stale.refresh_from_db()
    assert (stale.status, booking.status) == (BookingStatus.CANCELLED, BookingStatus.HELD)
