"""Calendar feeds out: feed tokens, the ICS feed of a user's sessions and one booking's ``.ics``."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest

from api import crypto
from api.errors import NotFoundError
from api.models import User
from audit.models import Outcome
from audit.services import (
    ANONYMOUS,
    EventDraft,
    access_drafts,
    audit_record,
    audit_record_many,
    origin_of,
    touch,
    touched,
)
from scheduling import ics, selectors
from scheduling.models import (
    Booking,
    BookingStatus,
    CalendarDetail,
    CalendarFeedToken,
)


@dataclass(frozen=True)
class IssuedFeedToken:
    token: CalendarFeedToken
    secret: str  # shown once: the path segment of the feed URL


@transaction.atomic
def calendar_feed_token_create(
    *, owner: User, request: HttpRequest | None, now: datetime
) -> IssuedFeedToken:
    """A new secret feed address for ``owner`` (a therapist or a client)."""
    lookup = secrets.token_hex(selectors.FEED_LOOKUP_CHARS // 2)
    secret = secrets.token_urlsafe(32)
    token = CalendarFeedToken.objects.create(
        owner=owner,
        lookup=lookup,
        secret_hash=crypto.keyed_hash(secret, purpose=selectors.FEED_TOKEN_PURPOSE),
        created_at=now,
    )
    audit_record(
        action="scheduling.calendar_feed_token.created",
        actor=owner,
        request=request,
        resource_type="scheduling.calendar_feed_token",
        resource_id=str(token.pk),
    )
    return IssuedFeedToken(token=token, secret=lookup + secret)


@transaction.atomic
def calendar_feed_token_revoke(
    *, owner: User, token_id: uuid.UUID, request: HttpRequest | None, now: datetime
) -> None:
    updated = CalendarFeedToken.objects.filter(
        pk=token_id, owner=owner, revoked_at__isnull=True
    ).update(revoked_at=now)
    if not updated:
        raise NotFoundError("No such feed token.")
    audit_record(
        action="scheduling.calendar_feed_token.revoked",
        actor=owner,
        request=request,
        resource_type="scheduling.calendar_feed_token",
        resource_id=str(token_id),
    )


FEED_REFRESH = timedelta(minutes=15)


def _initials(full_name: str) -> str:
    return "".join(f"{part[0].upper()}." for part in full_name.split()[:3] if part[:1].isalpha())


# A hold is not yet a session; a cancelled one stays in feeds so calendars remove it.
_EVENT_STATUS: dict[str, str] = {
    BookingStatus.HELD: "TENTATIVE",
    BookingStatus.CANCELLED: "CANCELLED",
}


def feed_event(booking: Booking, *, for_therapist: bool) -> ics.FeedEvent:
    if for_therapist:
        initials = _initials(booking.client.full_name)
        show = booking.therapist.calendar_detail == CalendarDetail.INITIALS and initials
        summary = f"Session – {initials}" if show else "Session"
    else:
        summary = f"Session with {booking.therapist.display_name}"
    return ics.FeedEvent(
        uid=f"{booking.pk}@{settings.CALENDAR_UID_DOMAIN}",
        start=booking.start,
        end=booking.end,
        summary=summary,
        status=_EVENT_STATUS.get(booking.status, "CONFIRMED"),
        sequence=booking.sequence,
        stamp=booking.updated_at,
    )


@transaction.atomic
def calendar_feed_read(
    *, presented: str, request: HttpRequest | None, now: datetime
) -> bytes | None:
    """The ICS feed behind a secret token, audited like a list of the owner's bookings: one
    event per client whose sessions it shows, in one INSERT, in this transaction.

    The feed owner is the actor (the request itself is anonymous). An unknown or revoked token
    gives None (the caller answers 404) and one denied event; the token never reaches a log or
    the audit trail.
    """
    owner = selectors.calendar_feed_token_owner(presented=presented)
    if owner is None:
        audit_record(
            action="list",
            outcome=Outcome.DENIED,
            request=request,
            actor_label=ANONYMOUS,
            resource_type="scheduling.booking",
            details={"route": "calendars/<token>.ics", "reason": "unknown_or_revoked_token"},
        )
        return None
    bookings = list(selectors.bookings_for_feed(owner=owner, now=now))
    drafts = access_drafts(
        objects=[item for b in bookings if (item := touched(b)) is not None],
        action="list",
        details={"route": "calendars/<token>.ics", "via": "calendar_feed"},
    ) or [EventDraft(action="list", resource_type="scheduling.booking", details={"count": 0})]
    audit_record_many(drafts=drafts, origin=origin_of(request=request, actor=owner))
    events = [feed_event(b, for_therapist=b.client_id != owner.pk) for b in bookings]
    return ics.render_calendar(events, name="Telehealth sessions", refresh=FEED_REFRESH)


def booking_ics_read(*, booking_id: uuid.UUID, user: User, now: datetime) -> bytes:
    """One booking as an ``.ics`` download for either participant (404 for anyone else, the
    same as for a booking that does not exist). The booking is ``touch``-ed: the caller's
    ``AuditedMixin`` records the read, or the denial."""
    booking = (
        Booking.objects.select_related("client", "therapist")
        .filter(pk=booking_id)
        .filter(Q(client=user) | Q(therapist__user=user))
        .first()
    )
    if booking is None:
        raise NotFoundError("No such booking.")
    touch(booking)
    event = feed_event(booking, for_therapist=booking.client_id != user.pk)
    return ics.render_calendar([event], name="Telehealth session", refresh=FEED_REFRESH)
