"""Writes: profiles, settings, session types, availability, licences, calendars, feed tokens.

Every change that can move a therapist's open slots ends with ``availability_summary_refresh``
in the same transaction, so the directory's precomputed summary follows it. The booking code
calls ``availability_summary_refresh`` too whenever a booking or hold starts or stops blocking.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest

from api import crypto
from api.errors import ConflictError, DomainError, NotFoundError
from api.models import Role, User
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
from scheduling import fetch, ics, selectors, slots
from scheduling.models import (
    NO_OPEN_SLOT_RANK,
    Attribute,
    AvailabilityOverride,
    AvailabilityRule,
    Booking,
    BookingStatus,
    CalendarDetail,
    CalendarFeedToken,
    CalendarSource,
    ExternalBusyInterval,
    ExternalCalendar,
    Licence,
    OpenSlotRun,
    OverrideKind,
    SessionType,
    TherapistAttribute,
    TherapistProfile,
)

# How far ahead the directory summary looks (its "open slot between A and B" filter cannot
# look further), and how far imported calendars are expanded.
SUMMARY_DAYS = 60
EXPAND_DAYS = 370
MAX_BUSY_PER_CALENDAR = 5_000  # expanding costs ~1 ms per occurrence
_URL_AAD = b"scheduling.calendar.url"
_CONTENT_AAD = b"scheduling.calendar.content"


class CalendarRefused(DomainError):
    """An ICS upload or URL we cannot use (400); nothing was stored."""

    code = "calendar_malformed"


class CalendarTooLarge(CalendarRefused):
    status_code = 413
    code = "calendar_too_large"
    title = "Payload too large"


@contextmanager
def _unique(detail: str, *, code: str) -> Iterator[None]:
    """Writes guarded by a unique constraint: a duplicate (also a concurrent one) is a 409."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise ConflictError(detail, code=code) from exc


# --- Profiles -----------------------------------------------------------------------------------

CARD_SESSION_TYPE_FIELDS = (
    "id",
    "name",
    "duration_minutes",
    "price_minor",
    "currency",
    "delivery",
    "cpt_code",
)


def _set_attributes(*, profile: TherapistProfile, kind: str, values: list[str]) -> None:
    TherapistAttribute.objects.filter(therapist=profile, kind=kind).delete()
    TherapistAttribute.objects.bulk_create(
        TherapistAttribute(therapist=profile, kind=kind, value=value, position=i)
        for i, value in enumerate(dict.fromkeys(values))
    )


_ATTRIBUTE_FIELDS = {
    "specialties": Attribute.SPECIALTY,
    "modalities": Attribute.MODALITY,
    "languages": Attribute.LANGUAGE,
}


def _apply_profile_fields(profile: TherapistProfile, fields: dict[str, Any]) -> list[str]:
    changed = []
    for name, value in fields.items():
        if name in _ATTRIBUTE_FIELDS:
            _set_attributes(profile=profile, kind=_ATTRIBUTE_FIELDS[name], values=value)
        else:
            setattr(profile, name, value)
            changed.append(name)
    return changed


def directory_card_refresh(*, therapist: TherapistProfile) -> None:
    """Rebuild the profile's directory card from its attributes, active session types and
    verified licences (expiry is applied when it is read). Call after changing any of them."""
    lists: dict[str, list[str]] = {name: [] for name in _ATTRIBUTE_FIELDS}
    by_kind: dict[str, str] = {kind.value: name for name, kind in _ATTRIBUTE_FIELDS.items()}
    for kind, value in (
        TherapistAttribute.objects.filter(therapist=therapist)
        .order_by("kind", "position")
        .values_list("kind", "value")
    ):
        lists[by_kind[kind]].append(value)
    session_types = [
        {**row, "id": str(row["id"])}
        for row in SessionType.objects.filter(therapist=therapist, is_active=True)
        .order_by("price_minor", "name")
        .values(*CARD_SESSION_TYPE_FIELDS)
    ]
    licences = [
        {"jurisdiction": jurisdiction, "expires_on": expires_on.isoformat()}
        for jurisdiction, expires_on in Licence.objects.filter(
            therapist=therapist, verified_at__isnull=False
        )
        .order_by("jurisdiction")
        .values_list("jurisdiction", "expires_on")
    ]
    card = {**lists, "session_types": session_types, "licences": licences}
    TherapistProfile.objects.filter(pk=therapist.pk).update(card=card)
    therapist.card = card


@transaction.atomic
def therapist_profile_create(
    *, user: User, display_name: str, time_zone: str, now: datetime, **fields: Any
) -> TherapistProfile:
    """A therapist's profile (one per therapist user)."""
    if user.role != Role.THERAPIST:
        raise ConflictError("Only therapists have a therapist profile.", code="not_a_therapist")
    locked = User.objects.select_for_update().get(pk=user.pk)
    if TherapistProfile.objects.filter(user=locked).exists():
        raise ConflictError("You already have a profile.", code="profile_exists")
    profile = TherapistProfile(
        user=locked, display_name=display_name, time_zone=time_zone, created_at=now, updated_at=now
    )
    attributes = {k: fields.pop(k) for k in list(fields) if k in _ATTRIBUTE_FIELDS}
    for name, value in fields.items():
        setattr(profile, name, value)
    profile.save()
    _apply_profile_fields(profile, attributes)
    directory_card_refresh(therapist=profile)
    availability_summary_refresh(therapist=profile, now=now)
    return profile


@transaction.atomic
def therapist_profile_update(
    *, profile: TherapistProfile, fields: dict[str, Any], now: datetime
) -> TherapistProfile:
    """Change profile or settings fields (specialties/modalities/languages replace the list)."""
    profile = TherapistProfile.objects.select_for_update().get(pk=profile.pk)
    changed = _apply_profile_fields(profile, fields)
    profile.updated_at = now
    profile.save(update_fields=[*changed, "updated_at"])
    if set(_ATTRIBUTE_FIELDS) & set(fields):
        directory_card_refresh(therapist=profile)
    if {
        "time_zone",
        "buffer_before_minutes",
        "buffer_after_minutes",
        "min_notice_minutes",
        "horizon_days",
        "max_sessions_per_day",
        "slot_step_minutes",
    } & set(changed):
        availability_summary_refresh(therapist=profile, now=now)
    return profile


# --- Session types ------------------------------------------------------------------------------


@transaction.atomic
def session_type_create(
    *,
    profile: TherapistProfile,
    name: str,
    duration_minutes: int,
    price_minor: int,
    currency: str,
    delivery: str,
    cpt_code: str = "",
    now: datetime,
) -> SessionType:
    with _unique("A session type with this name exists.", code="session_type_exists"):
        session_type = SessionType.objects.create(
            therapist=profile,
            name=name,
            duration_minutes=duration_minutes,
            price_minor=price_minor,
            currency=currency,
            delivery=delivery,
            cpt_code=cpt_code,
            created_at=now,
        )
    directory_card_refresh(therapist=profile)
    availability_summary_refresh(therapist=profile, now=now)
    return session_type


@transaction.atomic
def session_type_update(
    *, session_type: SessionType, fields: dict[str, Any], now: datetime
) -> SessionType:
    """Change a session type; bookings already made keep the terms copied onto them."""
    for key, value in fields.items():
        setattr(session_type, key, value)
    with _unique("A session type with this name exists.", code="session_type_exists"):
        session_type.save(update_fields=list(fields))
    directory_card_refresh(therapist=session_type.therapist)
    if "duration_minutes" in fields:
        availability_summary_refresh(therapist=session_type.therapist, now=now)
    return session_type


@transaction.atomic
def session_type_archive(*, session_type: SessionType, now: datetime) -> None:
    """No longer offered (kept for the bookings that reference it)."""
    SessionType.objects.filter(pk=session_type.pk).update(is_active=False)
    directory_card_refresh(therapist=session_type.therapist)
    availability_summary_refresh(therapist=session_type.therapist, now=now)


# --- Availability -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeeklyWindowInput:
    weekday: int
    start_minute: int
    end_minute: int


@transaction.atomic
def availability_rules_replace(
    *, profile: TherapistProfile, windows: list[WeeklyWindowInput], now: datetime
) -> list[AvailabilityRule]:
    """The therapist's weekly hours become exactly ``windows`` (one transaction)."""
    TherapistProfile.objects.select_for_update().filter(pk=profile.pk).first()
    AvailabilityRule.objects.filter(therapist=profile).delete()
    rules = AvailabilityRule.objects.bulk_create(
        AvailabilityRule(
            therapist=profile,
            weekday=w.weekday,
            start_minute=w.start_minute,
            end_minute=w.end_minute,
        )
        for w in sorted(windows, key=lambda w: (w.weekday, w.start_minute, w.end_minute))
    )
    availability_summary_refresh(therapist=profile, now=now)
    return rules


@transaction.atomic
def availability_override_create(
    *,
    profile: TherapistProfile,
    kind: str,
    first_date: date,
    last_date: date,
    start_minute: int | None = None,
    end_minute: int | None = None,
    now: datetime,
) -> AvailabilityOverride:
    if kind == OverrideKind.EXTRA:
        last_date = first_date
    else:
        start_minute = end_minute = None
    override = AvailabilityOverride.objects.create(
        therapist=profile,
        kind=kind,
        first_date=first_date,
        last_date=last_date,
        start_minute=start_minute,
        end_minute=end_minute,
    )
    availability_summary_refresh(therapist=profile, now=now)
    return override


@transaction.atomic
def availability_override_delete(*, override: AvailabilityOverride, now: datetime) -> None:
    therapist = override.therapist
    override.delete()
    availability_summary_refresh(therapist=therapist, now=now)


# --- The directory summary ----------------------------------------------------------------------


def open_slot_runs(starts: list[datetime], *, step: timedelta) -> list[tuple[datetime, datetime]]:
    """Sorted starts grouped into runs whose consecutive starts are at most ``step`` apart."""
    runs: list[tuple[datetime, datetime]] = []
    for s in starts:
        if runs and s - runs[-1][1] <= step:
            runs[-1] = (runs[-1][0], s)
        else:
            runs.append((s, s))
    return runs


def availability_summary_compute(
    *,
    schedule: slots.Schedule,
    durations: list[timedelta],
    busy: list[slots.Busy],
    now: datetime,
) -> list[datetime]:
    """Open starts of any of the session ``durations`` over the summary period (pure)."""
    end = now + timedelta(days=SUMMARY_DAYS)
    starts: set[datetime] = set()
    for duration in set(durations):
        starts.update(
            slots.open_slots(schedule, duration=duration, busy=busy, start=now, end=end, now=now)
        )
    return sorted(starts)


@transaction.atomic
def availability_summary_refresh(*, therapist: TherapistProfile, now: datetime) -> None:
    """Recompute the therapist's next open slot and open-slot runs for the directory.

    Call it (in the same transaction) after anything that changes open slots: rules,
    overrides, settings, session types, imported calendars, bookings and holds. It is also run
    for every therapist by ``manage.py refresh_availability``, since time passing moves the
    notice and horizon.
    """
    durations = [
        timedelta(minutes=m)
        for m in SessionType.objects.filter(therapist=therapist, is_active=True).values_list(
            "duration_minutes", flat=True
        )
    ]
    starts: list[datetime] = []
    if durations:
        schedule, busy = selectors.therapist_slot_inputs(
            therapist=therapist, start=now, end=now + timedelta(days=SUMMARY_DAYS), now=now
        )
        starts = availability_summary_compute(
            schedule=schedule, durations=durations, busy=busy, now=now
        )
    runs = open_slot_runs(starts, step=timedelta(minutes=therapist.slot_step_minutes))
    OpenSlotRun.objects.filter(therapist=therapist).delete()
    OpenSlotRun.objects.bulk_create(
        OpenSlotRun(therapist=therapist, first_start=a, last_start=b) for a, b in runs
    )
    next_open = starts[0] if starts else None
    TherapistProfile.objects.filter(pk=therapist.pk).update(
        next_open_slot=next_open,
        availability_rank=next_open or NO_OPEN_SLOT_RANK,
        availability_computed_at=now,
    )


# --- Licences -----------------------------------------------------------------------------------


def _licence_audit(action: str, licence: Licence, actor: User, request: HttpRequest | None) -> None:
    audit_record(
        action=action,
        actor=actor,
        request=request,
        resource_type="scheduling.licence",
        resource_id=str(licence.pk),
        details={"jurisdiction": licence.jurisdiction},
    )


@transaction.atomic
def licence_create(
    *,
    profile: TherapistProfile,
    jurisdiction: str,
    number: str,
    expires_on: date,
    actor: User,
    request: HttpRequest | None,
    now: datetime,
) -> Licence:
    """A licence awaiting an admin's verification."""
    with _unique("This licence is already listed.", code="licence_exists"):
        licence = Licence.objects.create(
            therapist=profile,
            jurisdiction=jurisdiction,
            number=number,
            expires_on=expires_on,
            created_at=now,
        )
    _licence_audit("scheduling.licence.created", licence, actor, request)
    return licence


@transaction.atomic
def licence_update(
    *,
    licence: Licence,
    fields: dict[str, Any],
    actor: User,
    request: HttpRequest | None,
    now: datetime,
) -> Licence:
    """Change a licence; any change clears its verification (an admin verifies it again)."""
    licence = Licence.objects.select_for_update().get(pk=licence.pk)
    for key, value in fields.items():
        setattr(licence, key, value)
    licence.verified_by = None
    licence.verified_at = None
    with _unique("This licence is already listed.", code="licence_exists"):
        licence.save(update_fields=[*fields, "verified_by", "verified_at"])
    directory_card_refresh(therapist=licence.therapist)
    _licence_audit("scheduling.licence.updated", licence, actor, request)
    return licence


@transaction.atomic
def licence_delete(
    *, licence: Licence, actor: User, request: HttpRequest | None, now: datetime
) -> None:
    _licence_audit("scheduling.licence.deleted", licence, actor, request)
    therapist = licence.therapist
    licence.delete()
    directory_card_refresh(therapist=therapist)


@transaction.atomic
def licence_verify(
    *, licence_id: uuid.UUID, admin: User, request: HttpRequest | None, now: datetime
) -> Licence:
    """An admin confirms a licence: who and when are recorded, and audited."""
    licence = Licence.objects.select_for_update().filter(pk=licence_id).first()
    if licence is None:
        raise NotFoundError("No such licence.")
    if licence.expires_on < now.date():
        raise ConflictError("This licence has expired.", code="licence_expired")
    licence.verified_by = admin
    licence.verified_at = now
    licence.save(update_fields=["verified_by", "verified_at"])
    directory_card_refresh(therapist=licence.therapist)
    _licence_audit("scheduling.licence.verified", licence, admin, request)
    return licence


# --- External calendars -------------------------------------------------------------------------


def _busy_from(data: bytes, *, zone: ZoneInfo, now: datetime) -> list[ics.Interval]:
    if len(data) > settings.CALENDAR_MAX_BYTES:
        raise CalendarTooLarge("The calendar file is too large.")
    try:
        return ics.parse_busy(
            data,
            zone=zone,
            window_start=now - timedelta(days=1),
            window_end=now + timedelta(days=EXPAND_DAYS),
            max_intervals=MAX_BUSY_PER_CALENDAR,
        )
    except ics.CalendarError as exc:
        raise CalendarRefused(str(exc), code=exc.code) from exc


def _store_busy(calendar: ExternalCalendar, intervals: list[ics.Interval]) -> None:
    ExternalBusyInterval.objects.filter(calendar=calendar).delete()
    ExternalBusyInterval.objects.bulk_create(
        (
            ExternalBusyInterval(
                calendar=calendar, therapist_id=calendar.therapist_id, start=i.start, end=i.end
            )
            for i in intervals
        ),
        batch_size=1000,
    )


@transaction.atomic
def external_calendar_upload(
    *, profile: TherapistProfile, name: str, content: bytes, now: datetime
) -> ExternalCalendar:
    """An uploaded ICS file as a busy calendar; a malformed or huge file stores nothing."""
    intervals = _busy_from(content, zone=ZoneInfo(profile.time_zone), now=now)
    calendar = ExternalCalendar.objects.create(
        therapist=profile,
        name=name,
        source=CalendarSource.UPLOAD,
        content_encrypted=crypto.encrypt(content.decode("utf-8"), associated_data=_CONTENT_AAD),
        content_sha256=hashlib.sha256(content).hexdigest(),
        last_synced_at=now,
        next_sync_at=now + timedelta(days=1),  # re-expanded daily as the window moves
        created_at=now,
    )
    _store_busy(calendar, intervals)
    availability_summary_refresh(therapist=profile, now=now)
    return calendar


@transaction.atomic
def external_calendar_subscribe(
    *, profile: TherapistProfile, name: str, url: str, now: datetime
) -> ExternalCalendar:
    """A calendar URL that ``sync_calendars`` fetches (first at its next run)."""
    try:
        target = fetch.parse_url(url)
        fetch.resolve(target)  # checked again at every fetch (the name may be rebound)
    except fetch.FetchError as exc:
        raise CalendarRefused("This calendar address cannot be used.", code=exc.code) from exc
    return ExternalCalendar.objects.create(
        therapist=profile,
        name=name,
        source=CalendarSource.URL,
        url_encrypted=crypto.encrypt(url.strip(), associated_data=_URL_AAD),
        url_host=target.host,
        next_sync_at=now,
        created_at=now,
    )


@transaction.atomic
def external_calendar_delete(*, calendar: ExternalCalendar, now: datetime) -> None:
    therapist = calendar.therapist
    calendar.delete()
    availability_summary_refresh(therapist=therapist, now=now)


def external_calendar_claim(*, calendar_id: uuid.UUID, now: datetime, lease: timedelta) -> bool:
    """Claim a due calendar for syncing (conditional update: one claimant wins)."""
    due = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    return (
        ExternalCalendar.objects.filter(due, pk=calendar_id, next_sync_at__lte=now).update(
            claimed_until=now + lease
        )
        == 1
    )


def external_calendar_sync(*, calendar_id: uuid.UUID, now: datetime) -> str:
    """Fetch (URL) or re-read (upload) a claimed calendar and replace its busy times.

    Returns ``"ok"`` or an error code; on error the previous busy times stay as they were.
    The network fetch happens outside any transaction.
    """
    calendar = ExternalCalendar.objects.select_related("therapist").get(pk=calendar_id)
    zone = ZoneInfo(calendar.therapist.time_zone)
    try:
        if calendar.source == CalendarSource.URL:
            url = crypto.decrypt(calendar.url_encrypted, associated_data=_URL_AAD)
            data = fetch.fetch(
                url,
                max_bytes=settings.CALENDAR_MAX_BYTES,
                timeout=settings.CALENDAR_FETCH_TIMEOUT_SECONDS,
            )
        else:
            data = crypto.decrypt(calendar.content_encrypted, associated_data=_CONTENT_AAD).encode()
        intervals = _busy_from(data, zone=zone, now=now)
    except (fetch.FetchError, CalendarRefused) as exc:
        ExternalCalendar.objects.filter(pk=calendar.pk).update(
            last_error=exc.code[:64],
            claimed_until=None,
            next_sync_at=now + timedelta(minutes=settings.CALENDAR_SYNC_INTERVAL_MINUTES),
        )
        return exc.code
    interval = (
        timedelta(minutes=settings.CALENDAR_SYNC_INTERVAL_MINUTES)
        if calendar.source == CalendarSource.URL
        else timedelta(days=1)
    )
    with transaction.atomic():
        _store_busy(calendar, intervals)
        ExternalCalendar.objects.filter(pk=calendar.pk).update(
            last_error="",
            last_synced_at=now,
            claimed_until=None,
            next_sync_at=now + interval,
            content_sha256=hashlib.sha256(data).hexdigest(),
        )
        availability_summary_refresh(therapist=calendar.therapist, now=now)
    return "ok"


# --- Calendar feed tokens -----------------------------------------------------------------------


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


# --- Calendar feeds out -------------------------------------------------------------------------

FEED_REFRESH = timedelta(minutes=15)


def _initials(full_name: str) -> str:
    return "".join(f"{part[0].upper()}." for part in full_name.split()[:3] if part[:1].isalpha())


# A hold is not yet a session; a cancelled one stays in feeds so calendars remove it.
_EVENT_STATUS: dict[str, str] = {
    BookingStatus.HELD: "TENTATIVE",
    BookingStatus.CANCELLED: "CANCELLED",
}


def _feed_event(booking: Booking, *, for_therapist: bool) -> ics.FeedEvent:
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
    events = [_feed_event(b, for_therapist=b.client_id != owner.pk) for b in bookings]
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
    event = _feed_event(booking, for_therapist=booking.client_id != user.pk)
    return ics.render_calendar([event], name="Telehealth session", refresh=FEED_REFRESH)


def availability_summaries_refresh(*, now: datetime, max_age: timedelta | None) -> int:
    """The ``refresh_availability`` job: recompute the summaries older than ``max_age`` (all of
    them when None), since time passing moves notice and horizon on; the number refreshed.
    Idempotent: each summary is recomputed from the rules, calendars and bookings."""
    rows = TherapistProfile.objects.all()
    if max_age is not None:
        rows = rows.filter(
            Q(availability_computed_at__isnull=True) | Q(availability_computed_at__lt=now - max_age)
        )
    count = 0
    for therapist in rows.order_by("pk").iterator(chunk_size=200):
        availability_summary_refresh(therapist=therapist, now=now)
        count += 1
    return count


def external_calendars_sync_due(
    *, now: datetime, limit: int = 500, lease: timedelta = timedelta(minutes=10)
) -> dict[str, int]:
    """The ``sync_calendars`` job: sync up to ``limit`` due calendars, each claimed first (a
    conditional update), so runs on several machines never fetch one twice; outcome counts."""
    due = ExternalCalendar.objects.filter(next_sync_at__lte=now).order_by("next_sync_at")
    outcomes: dict[str, int] = {}
    for calendar_id in due.values_list("id", flat=True)[:limit]:
        if not external_calendar_claim(calendar_id=calendar_id, now=now, lease=lease):
            continue  # another worker has it
        outcome = external_calendar_sync(calendar_id=calendar_id, now=now)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes
