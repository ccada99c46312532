"""Therapist directory, availability, calendars and (a first cut of) bookings.

Times are stored in UTC. Weekly windows and date overrides are kept in the therapist's IANA zone
as local dates and minutes of the day (0..1440, so a window may end at 24:00) and expanded by
``scheduling.slots``. Invariants that a row can state are database constraints.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.registry import protected


class Delivery(models.TextChoices):
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio only (phone)"
    IN_PERSON = "in_person", "In person"


class CalendarDetail(models.TextChoices):
    """What a therapist's ICS feed shows of a client: initials (default) or nothing."""

    INITIALS = "initials", "Session + client initials"
    NONE = "none", "Session only"


# A far-future instant used as the sort key of therapists with no open slot (sorted last).
NO_OPEN_SLOT_RANK = datetime(9999, 12, 31, tzinfo=UTC)


class TherapistProfile(models.Model):
    """A therapist's public profile and booking settings (one per user with role therapist).

    ``next_open_slot``/``availability_rank``/``availability_computed_at`` are a summary kept by
    ``services.availability_summary_refresh`` (with ``OpenSlotRun``) for the directory.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="therapist_profile"
    )
    display_name = models.CharField(max_length=120)
    pronouns = models.CharField(max_length=40, blank=True)
    bio = models.TextField(max_length=5000, blank=True)
    photo_url = models.URLField(max_length=500, blank=True)
    time_zone = models.CharField(max_length=64)
    accepting_new_clients = models.BooleanField(default=True)

    # Booking settings.
    buffer_before_minutes = models.PositiveSmallIntegerField(default=0)
    buffer_after_minutes = models.PositiveSmallIntegerField(default=0)
    min_notice_minutes = models.PositiveIntegerField(default=24 * 60)
    horizon_days = models.PositiveSmallIntegerField(default=60)
    max_sessions_per_day = models.PositiveSmallIntegerField(null=True, blank=True)
    slot_step_minutes = models.PositiveSmallIntegerField(default=30)
    calendar_detail = models.CharField(
        max_length=16, choices=CalendarDetail.choices, default=CalendarDetail.INITIALS
    )

    # Directory card: the public lists a directory row shows (specialties, modalities, languages,
    # active session types, verified licences), rebuilt by ``services.directory_card_refresh``
    # whenever they change, so a directory page is one query.
    card = models.JSONField(default=dict, blank=True)

    # Directory summary (precomputed).
    next_open_slot = models.DateTimeField(null=True, blank=True)
    availability_rank = models.DateTimeField(default=NO_OPEN_SLOT_RANK)
    availability_computed_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(buffer_before_minutes__lte=240) & Q(buffer_after_minutes__lte=240),
                name="therapist_buffers_range",
            ),
            models.CheckConstraint(
                condition=Q(horizon_days__gte=1) & Q(horizon_days__lte=365),
                name="therapist_horizon_range",
            ),
            models.CheckConstraint(
                condition=Q(max_sessions_per_day__isnull=True) | Q(max_sessions_per_day__gte=1),
                name="therapist_max_per_day_positive",
            ),
            models.CheckConstraint(
                condition=Q(slot_step_minutes__gte=5) & Q(slot_step_minutes__lte=240),
                name="therapist_step_range",
            ),
        ]
        indexes = [
            models.Index(fields=["availability_rank", "id"], name="therapist_rank_id"),
        ]

    def __str__(self) -> str:
        return f"TherapistProfile {self.pk}"


class Attribute(models.TextChoices):
    SPECIALTY = "specialty", "Specialty"
    MODALITY = "modality", "Modality"  # therapy approach: cbt, dbt, emdr, ...
    LANGUAGE = "language", "Language"  # BCP 47 tag


class TherapistAttribute(models.Model):
    """One searchable value of a profile's specialties, modalities or languages.

    Kept as rows (not a JSON list) so the directory filters by an indexed ``EXISTS`` on every
    database.
    """

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="attributes"
    )
    kind = models.CharField(max_length=16, choices=Attribute.choices)
    value = models.CharField(max_length=40)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["therapist", "kind", "value"], name="therapist_attribute_unique"
            ),
        ]
        indexes = [models.Index(fields=["kind", "value", "therapist"], name="attribute_lookup")]

    def __str__(self) -> str:
        return f"TherapistAttribute {self.pk}"


# The longest session a session type may have, in minutes.
SESSION_MAX_MINUTES = 480


class SessionType(models.Model):
    """What a client books: length, price in minor units of an ISO 4217 currency, delivery.

    Archived (``is_active=False``) rather than deleted, since bookings keep pointing at it.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="session_types"
    )
    name = models.CharField(max_length=80)
    duration_minutes = models.PositiveSmallIntegerField()
    price_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.VIDEO)
    cpt_code = models.CharField(max_length=5, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(duration_minutes__gt=0) & Q(duration_minutes__lte=SESSION_MAX_MINUTES),
                name="session_type_duration_range",
            ),
            models.CheckConstraint(condition=Q(price_minor__gte=0), name="session_type_price"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="session_type_currency_iso"
            ),
            models.CheckConstraint(
                condition=Q(delivery__in=[d.value for d in Delivery]),
                name="session_type_delivery_valid",
            ),
            models.UniqueConstraint(
                fields=["therapist", "name"],
                condition=Q(is_active=True),
                name="session_type_active_name_unique",
            ),
        ]
        indexes = [
            models.Index(
                fields=["therapist", "is_active", "price_minor"], name="session_type_price_idx"
            )
        ]

    def __str__(self) -> str:
        return f"SessionType {self.pk}"


class Licence(models.Model):
    """A licence to practise in a jurisdiction (ISO 3166-2 code such as ``US-NY``, or a country).

    It counts ("current") once an admin has verified it and until it expires; changing the
    jurisdiction, number or expiry clears the verification.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="licences"
    )
    jurisdiction = models.CharField(max_length=6)
    number = models.CharField(max_length=64)
    expires_on = models.DateField()
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["therapist", "jurisdiction", "number"], name="licence_unique"
            ),
            models.CheckConstraint(
                condition=Q(jurisdiction__regex=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"),
                name="licence_jurisdiction_iso3166",
            ),
            models.CheckConstraint(
                condition=Q(verified_by__isnull=True, verified_at__isnull=True)
                | Q(verified_by__isnull=False, verified_at__isnull=False),
                name="licence_verified_together",
            ),
        ]
        indexes = [
            models.Index(
                fields=["therapist", "jurisdiction", "expires_on"],
                condition=Q(verified_at__isnull=False),
                name="licence_current_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Licence {self.pk}"


class AvailabilityRule(models.Model):
    """A weekly window: every ``weekday`` (Monday = 0) from start to end minute, local time."""

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="availability_rules"
    )
    weekday = models.PositiveSmallIntegerField()
    start_minute = models.PositiveSmallIntegerField()
    end_minute = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(weekday__lte=6), name="rule_weekday_range"),
            models.CheckConstraint(
                condition=Q(end_minute__gt=F("start_minute")) & Q(end_minute__lte=1440),
                name="rule_end_after_start",
            ),
        ]
        indexes = [models.Index(fields=["therapist", "weekday"], name="rule_therapist_weekday")]

    def __str__(self) -> str:
        return f"AvailabilityRule {self.pk}"


class OverrideKind(models.TextChoices):
    EXTRA = "extra", "Extra hours on a date"
    TIME_OFF = "time_off", "Time off for a date range"


class AvailabilityOverride(models.Model):
    """Extra hours on one local date, or time off for a range of local dates (inclusive)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="availability_overrides"
    )
    kind = models.CharField(max_length=16, choices=OverrideKind.choices)
    first_date = models.DateField()
    last_date = models.DateField()
    start_minute = models.PositiveSmallIntegerField(null=True, blank=True)
    end_minute = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(last_date__gte=F("first_date")), name="override_dates_ordered"
            ),
            models.CheckConstraint(
                condition=(
                    Q(
                        kind=OverrideKind.EXTRA,
                        last_date=F("first_date"),
                        start_minute__isnull=False,
                        end_minute__gt=F("start_minute"),
                        end_minute__lte=1440,
                    )
                    | Q(
                        kind=OverrideKind.TIME_OFF,
                        start_minute__isnull=True,
                        end_minute__isnull=True,
                    )
                ),
                name="override_kind_shape",
            ),
        ]
        indexes = [
            models.Index(fields=["therapist", "last_date"], name="override_therapist_last"),
        ]

    def __str__(self) -> str:
        return f"AvailabilityOverride {self.pk}"


class CalendarSource(models.TextChoices):
    UPLOAD = "upload", "Uploaded ICS"
    URL = "url", "ICS URL fetched periodically"


class ExternalCalendar(models.Model):
    """An external busy calendar. Its content (upload) or address (URL, often a secret link)
    is stored encrypted; its expanded busy times are ``ExternalBusyInterval`` rows.

    ``sync_calendars`` claims due rows with a conditional update on ``claimed_until``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="external_calendars"
    )
    name = models.CharField(max_length=80)
    source = models.CharField(max_length=8, choices=CalendarSource.choices)
    url_encrypted = models.TextField(blank=True)
    url_host = models.CharField(max_length=255, blank=True)
    content_encrypted = models.TextField(blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=64, blank=True)
    next_sync_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(source=CalendarSource.UPLOAD, url_encrypted="")
                | Q(source=CalendarSource.URL) & ~Q(url_encrypted=""),
                name="calendar_source_shape",
            ),
        ]
        indexes = [models.Index(fields=["next_sync_at"], name="calendar_next_sync")]

    def __str__(self) -> str:
        return f"ExternalCalendar {self.pk}"


class ExternalBusyInterval(models.Model):
    """One busy time expanded from an external calendar (UTC)."""

    calendar = models.ForeignKey(
        ExternalCalendar, on_delete=models.CASCADE, related_name="busy_intervals"
    )
    therapist = models.ForeignKey(TherapistProfile, on_delete=models.CASCADE, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="busy_end_after_start"),
        ]
        indexes = [models.Index(fields=["therapist", "start"], name="busy_therapist_start")]

    def __str__(self) -> str:
        return f"ExternalBusyInterval {self.pk}"


class OpenSlotRun(models.Model):
    """Directory summary: open starts from ``first_start`` to ``last_start`` every slot step.

    Rebuilt by ``services.availability_summary_refresh``; answers "has an open slot between A
    and B" with one indexed ``EXISTS`` per therapist.
    """

    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.CASCADE, related_name="open_slot_runs"
    )
    first_start = models.DateTimeField()
    last_start = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(last_start__gte=F("first_start")), name="run_ordered"
            ),
        ]
        indexes = [
            models.Index(fields=["therapist", "last_start", "first_start"], name="run_lookup"),
        ]

    def __str__(self) -> str:
        return f"OpenSlotRun {self.pk}"


class CalendarFeedToken(models.Model):
    """A secret feed address ``/api/v1/calendars/<lookup><secret>.ics`` for one user.

    Only an HMAC of the secret is stored; the lookup part finds the row, the secret is compared
    in constant time. Revoked tokens stop working at once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feed_tokens"
    )
    lookup = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"CalendarFeedToken {self.pk}"


class BookingStatus(models.TextChoices):
    HELD = "held", "Held"
    CONFIRMED = "confirmed", "Confirmed"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "no_show", "No show"


@protected("scheduling.booking", patient=lambda booking: booking.client_id)
class Booking(models.Model):
    """A session between a client and a therapist: a first cut that issue 5 extends.

    Only the fields the slot engine and the calendar feeds read are here. ``blocked_start`` and
    ``blocked_end`` are the session with the therapist's buffers at booking time: this range is
    what the slot engine treats as busy (and what an exclusion constraint should cover). A held
    booking blocks until ``hold_expires_at`` with no job needed. ``sequence`` is the ICS
    SEQUENCE: bump it (``F("sequence") + 1``) on every change a calendar shows.
    Writes belong to the booking services of issue 5.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    therapist = models.ForeignKey(
        TherapistProfile, on_delete=models.PROTECT, related_name="bookings"
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="client_bookings"
    )
    session_type = models.ForeignKey(SessionType, on_delete=models.PROTECT, related_name="+")
    start = models.DateTimeField()
    end = models.DateTimeField()
    blocked_start = models.DateTimeField()
    blocked_end = models.DateTimeField()
    status = models.CharField(max_length=16, choices=BookingStatus.choices)
    hold_expires_at = models.DateTimeField(null=True, blank=True)
    sequence = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    # Issue 5 (scheduling/bookings): where the client said they are, and the terms in force when
    # the booking was made (copied, so later changes of the therapist's settings never apply).
    client_jurisdiction = models.CharField(max_length=6, blank=True)
    price_minor = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, blank=True)
    cancel_free_hours = models.PositiveSmallIntegerField(default=24)
    late_fee_kind = models.CharField(max_length=8, default="none")
    late_fee_value = models.PositiveIntegerField(default=0)
    series = models.ForeignKey(
        "BookingSeries", null=True, blank=True, on_delete=models.PROTECT, related_name="bookings"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(late_fee_kind__in=["none", "percent", "fixed"])
                & (~Q(late_fee_kind="percent") | Q(late_fee_value__lte=100)),
                name="booking_late_fee_shape",
            ),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="booking_end_after_start"),
            models.CheckConstraint(
                condition=Q(blocked_start__lte=F("start")) & Q(blocked_end__gte=F("end")),
                name="booking_blocked_covers_session",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in BookingStatus]),
                name="booking_status_valid",
            ),
            models.CheckConstraint(
                condition=~Q(status=BookingStatus.HELD) | Q(hold_expires_at__isnull=False),
                name="booking_hold_expires",
            ),
        ]
        indexes = [
            models.Index(fields=["therapist", "blocked_start"], name="booking_therapist_blocked"),
            models.Index(fields=["client", "start"], name="booking_client_start"),
            # Issue 5: reminders (confirmed sessions by start) and the hold tidy-up.
            models.Index(
                fields=["start"], condition=Q(status="confirmed"), name="booking_confirmed_start"
            ),
            models.Index(
                fields=["hold_expires_at"], condition=Q(status="held"), name="booking_held_expiry"
            ),
        ]

    def __str__(self) -> str:
        return f"Booking {self.pk}"


# --- Issue 5: the booking lifecycle, notes and client profiles (scheduling/bookings, notes,
# clients). Writes go through those packages' services only.


class LateFeeKind(models.TextChoices):
    """How a late cancellation is charged (the values ``Booking.late_fee_kind`` accepts)."""

    NONE = "none", "No fee"
    PERCENT = "percent", "Percentage of the price"
    FIXED = "fixed", "Fixed amount (minor units of the booking's currency, at most the price)"


class CancellationPolicy(models.Model):
    """A therapist's cancellation terms: free until ``free_until_hours`` (elapsed hours) before
    the start; later, a late fee. A therapist without a row has the defaults below. Copied onto
    each booking when it is made."""

    therapist = models.OneToOneField(
        TherapistProfile, on_delete=models.CASCADE, related_name="cancellation_policy"
    )
    free_until_hours = models.PositiveSmallIntegerField(default=24)
    late_fee_kind = models.CharField(
        max_length=8, choices=LateFeeKind.choices, default=LateFeeKind.NONE
    )
    late_fee_value = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(free_until_hours__lte=720), name="policy_free_hours_range"
            ),
            models.CheckConstraint(
                condition=Q(late_fee_kind__in=[k.value for k in LateFeeKind])
                & (~Q(late_fee_kind=LateFeeKind.PERCENT) | Q(late_fee_value__lte=100))
                & (~Q(late_fee_kind=LateFeeKind.NONE) | Q(late_fee_value=0)),
                name="policy_late_fee_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"CancellationPolicy {self.pk}"


class SeriesFrequency(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    FORTNIGHTLY = "fortnightly", "Every two weeks"


class BookingSeries(models.Model):
    """Recurring sessions booked in one request; each occurrence is an ordinary ``Booking``."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="booking_series"
    )
    therapist = models.ForeignKey(TherapistProfile, on_delete=models.PROTECT, related_name="+")
    frequency = models.CharField(max_length=12, choices=SeriesFrequency.choices)
    requested_count = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"BookingSeries {self.pk}"


class BookingTransition(models.Model):
    """One change of a booking: who (a user, or ``actor_label`` for the system/billing), when,
    from which status to which, and why. Creation has an empty ``from_status``; a reschedule
    keeps the status and records the previous start."""

    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="transitions")
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, choices=BookingStatus.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_label = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=64)
    previous_start = models.DateTimeField(null=True, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(actor__isnull=False) | ~Q(actor_label=""),
                name="transition_has_actor",
            ),
        ]
        indexes = [models.Index(fields=["booking", "occurred_at"], name="transition_booking")]

    def __str__(self) -> str:
        return f"BookingTransition {self.pk}"


class FeeRequestKind(models.TextChoices):
    FULL_REFUND = "full_refund", "Refund everything paid (or cancel an uncaptured payment)"
    LATE_CANCELLATION_FEE = "late_cancellation_fee", "Keep fee_minor, refund the rest"
    NO_SHOW_FEE = "no_show_fee", "The client did not come: keep fee_minor, refund the rest"


class FeeRequestState(models.TextChoices):
    PENDING = "pending", "Waiting for billing"
    SETTLED = "settled", "Handled by billing"


class FeeRequest(models.Model):
    """What a cancellation asks billing to do with the booking's money: never charged here.

    ``fee_minor + refund_minor`` is the booking's price; billing keeps (or charges) the fee and
    refunds the rest, then marks the request settled. One per booking (a booking is cancelled
    once). Billing claims pending requests with ``fee_request_claim`` (conditional update).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.OneToOneField(Booking, on_delete=models.PROTECT, related_name="fee_request")
    kind = models.CharField(max_length=24, choices=FeeRequestKind.choices)
    reason = models.CharField(max_length=32)
    fee_minor = models.PositiveIntegerField()
    refund_minor = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    state = models.CharField(
        max_length=8, choices=FeeRequestState.choices, default=FeeRequestState.PENDING
    )
    claimed_until = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in FeeRequestKind]), name="fee_request_kind"
            ),
            models.CheckConstraint(
                condition=~Q(kind=FeeRequestKind.FULL_REFUND) | Q(fee_minor=0),
                name="fee_request_full_refund_no_fee",
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="fee_request_currency_iso"
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"],
                condition=Q(state="pending"),
                name="fee_request_pending",
            )
        ]

    def __str__(self) -> str:
        return f"FeeRequest {self.pk}"


class NotificationKind(models.TextChoices):
    BOOKED = "booked", "Booked"
    CONFIRMED = "confirmed", "Confirmed"
    CANCELLED = "cancelled", "Cancelled"
    RESCHEDULED = "rescheduled", "Rescheduled"
    REMINDER_24H = "reminder_24h", "Reminder 24 h before"
    REMINDER_1H = "reminder_1h", "Reminder 1 h before"


class BookingNotification(models.Model):
    """An email to send about a booking (an outbox row).

    Written in the transaction of the change it announces (so a rolled-back change sends
    nothing), delivered after commit and by ``manage.py send_reminders``. ``dedupe_key`` makes
    each message unique (the booking's sequence for changes, the start for reminders): inserting
    it twice is a no-op. A sender claims rows with one conditional update (``claimed_until``
    past, its own ``claim_token`` set), so two senders never both send one.
    """

    id = models.BigAutoField(primary_key=True)
    booking = models.ForeignKey(Booking, on_delete=models.CASCADE, related_name="notifications")
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=NotificationKind.choices)
    dedupe_key = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)  # sent, or dropped as stale

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["booking", "recipient", "kind", "dedupe_key"],
                name="notification_once",
            ),
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(sent_at__isnull=True), name="notification_unsent"
            )
        ]

    def __str__(self) -> str:
        return f"BookingNotification {self.pk}"


@protected("scheduling.session_note", patient=lambda note: note.booking.client_id)
class SessionNote(models.Model):
    """A therapist's notes on one booking: readable by its author only, versioned; once signed
    it is locked (read-only). The text lives in ``SessionNoteVersion`` rows, encrypted."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.OneToOneField(Booking, on_delete=models.PROTECT, related_name="note")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="authored_notes"
    )
    current_version = models.PositiveIntegerField(default=1)
    signed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"SessionNote {self.pk}"


@protected(
    "scheduling.session_note_version", patient=lambda version: version.note.booking.client_id
)
class SessionNoteVersion(models.Model):
    """One version of a note's text: ``body_encrypted`` is AES-GCM under the key ``key_id`` names,
    bound to (note, version). Versions are never changed, except re-encrypted under a new key."""

    note = models.ForeignKey(SessionNote, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    body_encrypted = models.TextField()
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["note", "version"], name="note_version_unique"),
        ]
        indexes = [models.Index(fields=["key_id", "id"], name="note_version_key")]

    def __str__(self) -> str:
        return f"SessionNoteVersion {self.pk}"


@protected("scheduling.client_profile", patient=lambda profile: profile.user_id)
class ClientProfile(models.Model):
    """A client's protected details. Date of birth, phone and emergency contact are encrypted
    (all under the key ``key_id`` names, bound to the user and field); ``phone_index`` is a
    keyed hash (blind index) of the normalised phone for equality lookups. The home
    jurisdiction is a region code, kept in clear."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_profile"
    )
    date_of_birth_encrypted = models.TextField(blank=True)
    phone_encrypted = models.TextField(blank=True)
    phone_index = models.CharField(max_length=64, blank=True)
    emergency_contact_encrypted = models.TextField(blank=True)
    home_jurisdiction = models.CharField(max_length=6, blank=True)
    key_id = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(home_jurisdiction="")
                | Q(home_jurisdiction__regex=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"),
                name="client_home_jurisdiction_iso3166",
            ),
        ]
        indexes = [
            models.Index(
                fields=["phone_index"], condition=~Q(phone_index=""), name="client_phone_index"
            ),
            models.Index(fields=["key_id", "id"], name="client_profile_key"),
        ]

    def __str__(self) -> str:
        return f"ClientProfile {self.pk}"
