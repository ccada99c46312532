"""Bookings and their life: the booking, its transitions, series, cancellation terms, the fee
requests handed to billing and the notification outbox (writes: ``scheduling.bookings``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.registry import protected
from scheduling.models.directory import TherapistProfile
from scheduling.models.session_types import SessionType


class BookingStatus(models.TextChoices):
    HELD = "held", "Held"
    CONFIRMED = "confirmed", "Confirmed"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    NO_SHOW = "no_show", "No show"


@protected("scheduling.booking", patient=lambda booking: booking.client_id)
class Booking(models.Model):
    """A session between a client and a therapist.

    ``blocked_start`` and ``blocked_end`` are the session with the therapist's buffers at
    booking time: this range is what the slot engine treats as busy and what the PostgreSQL
    exclusion constraint ``booking_no_overlap`` covers (``scheduling/bookings/db.py``). A held
    booking blocks until ``hold_expires_at`` with no job needed. ``sequence`` is the ICS
    SEQUENCE: bump it (``F("sequence") + 1``) on every change a calendar shows. Writes go
    through ``scheduling.bookings`` only.
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
    # Where the client said they are, and the terms in force when the booking was made
    # (copied, so later changes of the therapist's settings never apply).
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
            # Reminders (confirmed sessions by start) and the hold tidy-up.
            models.Index(
                fields=["start"], condition=Q(status="confirmed"), name="booking_confirmed_start"
            ),
            models.Index(
                fields=["hold_expires_at"], condition=Q(status="held"), name="booking_held_expiry"
            ),
        ]

    def __str__(self) -> str:
        return f"Booking {self.pk}"


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
