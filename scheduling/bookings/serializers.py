"""Booking input (strict: unknown fields such as a price or a status are refused) and output."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import Direction, extend_schema_field
from rest_framework import serializers

from api.serializers import THIS_CENTURY, OffsetDateTimeField, StrictInputSerializer
from scheduling.bookings import contributions
from scheduling.bookings.services import CANCEL_REASONS, ON_CONFLICT_ABORT, ON_CONFLICT_SKIP
from scheduling.models import (
    Booking,
    BookingStatus,
    BookingTransition,
    CancellationPolicy,
    Delivery,
    FeeRequest,
    LateFeeKind,
    SeriesFrequency,
)
from scheduling.serializers import MAX_SLOT_RANGE, validate_zone

JURISDICTION = r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$"


def _jurisdiction() -> serializers.RegexField:
    return serializers.RegexField(
        JURISDICTION,
        max_length=6,
        help_text="Where the client is for the session: ISO 3166-2 (US-NY) or a country (GB)",
    )


# --- Input --------------------------------------------------------------------------------------


def _session_start(**kwargs: Any) -> OffsetDateTimeField:
    """A session's start (or a schedule's bound): with its offset, within this century."""
    return OffsetDateTimeField(bounds=THIS_CENTURY, **kwargs)


class BookingIn(StrictInputSerializer):
    therapist = serializers.UUIDField()
    session_type = serializers.UUIDField()
    start = _session_start(help_text="ISO 8601 with offset; one of the listed slots")
    jurisdiction = _jurisdiction()


class SeriesIn(StrictInputSerializer):
    therapist = serializers.UUIDField()
    session_type = serializers.UUIDField()
    first_start = _session_start()
    frequency = serializers.ChoiceField(choices=SeriesFrequency.choices)
    count = serializers.IntegerField(min_value=1, max_value=settings.BOOKING_SERIES_MAX_OCCURRENCES)
    jurisdiction = _jurisdiction()
    on_conflict = serializers.ChoiceField(
        choices=[ON_CONFLICT_ABORT, ON_CONFLICT_SKIP],
        default=ON_CONFLICT_ABORT,
        help_text="abort: book none if any occurrence collides; skip: book the rest",
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="Report each occurrence without booking anything"
    )


class CancelIn(StrictInputSerializer):
    reason = serializers.ChoiceField(choices=CANCEL_REASONS)


class RescheduleIn(StrictInputSerializer):
    start = _session_start()


class CancellationPolicyIn(StrictInputSerializer):
    free_until_hours = serializers.IntegerField(min_value=0, max_value=720)
    late_fee_kind = serializers.ChoiceField(choices=LateFeeKind.choices)
    late_fee_value = serializers.IntegerField(
        min_value=0,
        max_value=10_000_000,
        help_text="percent (0-100), or minor units of the booking's currency; 0 for none",
    )


class ScheduleQuery(StrictInputSerializer):
    period = serializers.ChoiceField(choices=["day", "week", "range"], default="day")
    date = serializers.DateField(required=False, help_text="day/week: a local date (tz)")
    start = _session_start(required=False, help_text="range only")
    end = _session_start(required=False, help_text="range only")
    tz = serializers.CharField(
        max_length=64, validators=[validate_zone], required=False, help_text="default: yours"
    )
    include_cancelled = serializers.BooleanField(default=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["period"] == "range":
            if "start" not in attrs or "end" not in attrs or "date" in attrs:
                raise serializers.ValidationError("A range takes start and end.", code="invalid")
            if not attrs["start"] < attrs["end"] <= attrs["start"] + MAX_SLOT_RANGE:
                raise serializers.ValidationError(
                    {"end": [f"After start, at most {MAX_SLOT_RANGE.days} days later."]}
                )
        elif "start" in attrs or "end" in attrs or "date" not in attrs:
            raise serializers.ValidationError("A day or a week takes date.", code="invalid")
        elif not THIS_CENTURY[0].date() <= attrs["date"] < THIS_CENTURY[1].date():
            raise serializers.ValidationError({"date": ["Give a date between 2000 and 2099."]})
        return attrs


# --- Output -------------------------------------------------------------------------------------


class PartyTherapistOut(serializers.Serializer):
    id = serializers.UUIDField()
    display_name = serializers.CharField()
    time_zone = serializers.CharField()


class PartyClientOut(serializers.Serializer):
    id = serializers.UUIDField()
    full_name = serializers.CharField()


class BookedSessionTypeOut(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    delivery = serializers.ChoiceField(choices=Delivery.choices)


class TermsOut(serializers.Serializer):
    free_until_hours = serializers.IntegerField(source="cancel_free_hours")
    late_fee_kind = serializers.ChoiceField(choices=LateFeeKind.choices)
    late_fee_value = serializers.IntegerField()


class FeeRequestOut(serializers.ModelSerializer):
    class Meta:
        model = FeeRequest
        fields = ["kind", "reason", "fee_minor", "refund_minor", "currency", "state"]


class TransitionOut(serializers.ModelSerializer):
    from_status = serializers.ChoiceField(
        choices=[("", "(created)"), *BookingStatus.choices],
        help_text="Empty for the booking's creation.",
    )
    by = serializers.SerializerMethodField(help_text="client, therapist, billing or system")

    class Meta:
        model = BookingTransition
        fields = ["from_status", "to_status", "by", "reason", "previous_start", "occurred_at"]

    def get_by(self, transition: BookingTransition) -> str:
        if transition.actor is None:
            return transition.actor_label
        return "client" if transition.actor_id == transition.booking.client_id else "therapist"


class BookingPaymentField(serializers.Field):
    """The booking's session payment (its latest attempt), or null before /pay: what billing
    shows of it (``contributions.BookingPayment``)."""

    def __init__(self) -> None:
        super().__init__(source="*", read_only=True)

    def to_representation(self, booking: Booking) -> dict[str, Any] | None:
        return contributions.booking_payment().shown(booking)


class BookingPaymentFieldSchema(OpenApiSerializerFieldExtension):
    """The payment field's schema is that of billing's serializer for it."""

    target_class = BookingPaymentField

    def map_serializer_field(self, auto_schema: AutoSchema, direction: Direction) -> dict[str, Any]:
        return auto_schema._map_serializer_field(contributions.booking_payment().schema, direction)


class BookingOut(serializers.ModelSerializer):
    therapist = PartyTherapistOut()
    client = PartyClientOut()
    session_type = BookedSessionTypeOut()
    terms = TermsOut(source="*")
    fee_request = serializers.SerializerMethodField()
    payment = BookingPaymentField()

    class Meta:
        model = Booking
        fields = [
            "id",
            "status",
            "start",
            "end",
            "therapist",
            "client",
            "session_type",
            "client_jurisdiction",
            "price_minor",
            "currency",
            "terms",
            "hold_expires_at",
            "series",
            "fee_request",
            "payment",
            "created_at",
            "updated_at",
        ]

    @staticmethod
    def _fee_request(booking: Booking) -> FeeRequest | None:
        if booking.status != BookingStatus.CANCELLED:  # only a cancellation makes one
            return None
        try:
            return booking.fee_request
        except FeeRequest.DoesNotExist:
            return None

    @extend_schema_field(FeeRequestOut(allow_null=True))
    def get_fee_request(self, booking: Booking) -> dict[str, Any] | None:
        fee_request = self._fee_request(booking)
        return FeeRequestOut(fee_request).data if fee_request is not None else None


class BookingDetailOut(BookingOut):
    transitions = TransitionOut(many=True)

    class Meta(BookingOut.Meta):
        fields = [*BookingOut.Meta.fields, "transitions"]


class OccurrenceOut(serializers.Serializer):
    index = serializers.IntegerField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    code = serializers.CharField(help_text="why it cannot be booked; empty when it can")
    booking = BookingOut(allow_null=True)


class SeriesOut(serializers.Serializer):
    series = serializers.UUIDField(source="series.pk", allow_null=True, default=None)
    occurrences = OccurrenceOut(many=True)


class CancellationPolicyOut(serializers.ModelSerializer):
    class Meta:
        model = CancellationPolicy
        fields = ["free_until_hours", "late_fee_kind", "late_fee_value"]
