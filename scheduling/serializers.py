"""Input serializers (strict: unknown fields are refused) and output serializers."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from api.serializers import THIS_CENTURY, OffsetDateTimeField, StrictInputSerializer
from scheduling.models import (
    SESSION_MAX_MINUTES,
    AvailabilityOverride,
    AvailabilityRule,
    CalendarDetail,
    CalendarFeedToken,
    CalendarSource,
    Delivery,
    ExternalCalendar,
    Licence,
    OverrideKind,
    SessionType,
    TherapistProfile,
)

MAX_SLOT_RANGE = timedelta(days=92)
_WALL_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
_SLUG = r"^[a-z0-9][a-z0-9-]{0,39}$"
_LANGUAGE = r"^[a-z]{2,3}(-[A-Z]{2})?$"


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def validate_zone(name: str) -> None:
    if name not in _zones():
        raise serializers.ValidationError("Not an IANA time zone name.", code="invalid_time_zone")


@extend_schema_field({"type": "string", "pattern": _WALL_CLOCK.pattern, "example": "09:00"})
class WallClockField(serializers.Field):
    """``"HH:MM"`` local time as minutes of the day; ``"24:00"`` is the end of the day."""

    default_error_messages = {"invalid": "Use HH:MM (00:00 to 24:00)."}

    def to_internal_value(self, data: Any) -> int:
        if not isinstance(data, str) or not _WALL_CLOCK.match(data):
            self.fail("invalid")
        hours, minutes = data.split(":")
        return int(hours) * 60 + int(minutes)

    def to_representation(self, value: int) -> str:
        return f"{value // 60:02d}:{value % 60:02d}"


def _tags(pattern: str) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.RegexField(pattern, max_length=40), max_length=20, required=False
    )


# --- Profiles and settings ----------------------------------------------------------------------


class ProfileFieldsIn(StrictInputSerializer):
    display_name = serializers.CharField(max_length=120)
    pronouns = serializers.CharField(max_length=40, allow_blank=True, required=False)
    bio = serializers.CharField(max_length=5000, allow_blank=True, required=False)
    photo_url = serializers.URLField(max_length=500, allow_blank=True, required=False)
    time_zone = serializers.CharField(max_length=64, validators=[validate_zone])
    accepting_new_clients = serializers.BooleanField(required=False)
    specialties = _tags(_SLUG)
    modalities = _tags(_SLUG)
    languages = _tags(_LANGUAGE)

    def validate_photo_url(self, value: str) -> str:
        if value and not value.lower().startswith("https://"):
            raise serializers.ValidationError("Use an https:// address.", code="https_required")
        return value


class SettingsIn(StrictInputSerializer):
    buffer_before_minutes = serializers.IntegerField(min_value=0, max_value=240, required=False)
    buffer_after_minutes = serializers.IntegerField(min_value=0, max_value=240, required=False)
    min_notice_minutes = serializers.IntegerField(
        min_value=0, max_value=30 * 24 * 60, required=False
    )
    horizon_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    max_sessions_per_day = serializers.IntegerField(
        min_value=1, max_value=48, allow_null=True, required=False
    )
    slot_step_minutes = serializers.IntegerField(min_value=5, max_value=240, required=False)
    calendar_detail = serializers.ChoiceField(choices=CalendarDetail.choices, required=False)


_SETTINGS_FIELDS = list(SettingsIn._declared_fields)


class CardListsMixin(serializers.Serializer):
    """The attribute lists, read from the profile's directory card (no extra query)."""

    specialties = serializers.SerializerMethodField()
    modalities = serializers.SerializerMethodField()
    languages = serializers.SerializerMethodField()

    def get_specialties(self, profile: TherapistProfile) -> list[str]:
        return list(profile.card.get("specialties", []))

    def get_modalities(self, profile: TherapistProfile) -> list[str]:
        return list(profile.card.get("modalities", []))

    def get_languages(self, profile: TherapistProfile) -> list[str]:
        return list(profile.card.get("languages", []))


class OwnProfileOut(CardListsMixin, serializers.ModelSerializer):
    class Meta:
        model = TherapistProfile
        fields = [
            "id",
            "display_name",
            "pronouns",
            "bio",
            "photo_url",
            "time_zone",
            "accepting_new_clients",
            "specialties",
            "modalities",
            "languages",
            *_SETTINGS_FIELDS,
            "next_open_slot",
            "availability_computed_at",
        ]


class SettingsOut(serializers.ModelSerializer):
    class Meta:
        model = TherapistProfile
        fields = _SETTINGS_FIELDS


# --- Session types ------------------------------------------------------------------------------


class SessionTypeIn(StrictInputSerializer):
    name = serializers.CharField(max_length=80)
    duration_minutes = serializers.IntegerField(min_value=5, max_value=SESSION_MAX_MINUTES)
    price_minor = serializers.IntegerField(min_value=0, max_value=10_000_000)
    currency = serializers.RegexField(r"^[A-Z]{3}$", max_length=3)
    delivery = serializers.ChoiceField(choices=Delivery.choices)
    cpt_code = serializers.RegexField(r"^\d{4}[0-9A-Z]$", allow_blank=True, required=False)


class SessionTypeOut(serializers.ModelSerializer):
    class Meta:
        model = SessionType
        fields = [
            "id",
            "name",
            "duration_minutes",
            "price_minor",
            "currency",
            "delivery",
            "cpt_code",
            "is_active",
        ]


# --- Availability -------------------------------------------------------------------------------


class WindowIn(StrictInputSerializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text="Monday = 0")
    start = WallClockField()
    end = WallClockField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["Must be after start."]}, code="invalid")
        return attrs


class RulesIn(StrictInputSerializer):
    windows = serializers.ListField(child=WindowIn(), max_length=70)


class RuleOut(serializers.ModelSerializer):
    start = WallClockField(source="start_minute")
    end = WallClockField(source="end_minute")

    class Meta:
        model = AvailabilityRule
        fields = ["weekday", "start", "end"]


class OverrideIn(StrictInputSerializer):
    kind = serializers.ChoiceField(choices=OverrideKind.choices)
    first_date = serializers.DateField()
    last_date = serializers.DateField(required=False)
    start = WallClockField(required=False)
    end = WallClockField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["kind"] == OverrideKind.EXTRA:
            if "last_date" in attrs or "start" not in attrs or "end" not in attrs:
                raise serializers.ValidationError(
                    "Extra hours take first_date, start and end.", code="invalid"
                )
            if attrs["end"] <= attrs["start"]:
                raise serializers.ValidationError({"end": ["Must be after start."]})
            attrs["last_date"] = attrs["first_date"]
        else:
            if "start" in attrs or "end" in attrs or "last_date" not in attrs:
                raise serializers.ValidationError(
                    "Time off takes first_date and last_date.", code="invalid"
                )
            span = (attrs["last_date"] - attrs["first_date"]).days
            if not 0 <= span <= 366:
                raise serializers.ValidationError(
                    {"last_date": ["Must be on or after first_date, within a year."]}
                )
        return attrs


class OverrideOut(serializers.ModelSerializer):
    start = WallClockField(source="start_minute", allow_null=True)
    end = WallClockField(source="end_minute", allow_null=True)

    class Meta:
        model = AvailabilityOverride
        fields = ["id", "kind", "first_date", "last_date", "start", "end"]


# --- Licences -----------------------------------------------------------------------------------


class LicenceIn(StrictInputSerializer):
    jurisdiction = serializers.RegexField(
        r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$", help_text="ISO 3166-2 code (US-NY) or country (GB)"
    )
    number = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9 ./-]{0,63}$")
    expires_on = serializers.DateField()


class LicenceUpdateIn(LicenceIn):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, partial=True, **kwargs)


class LicenceOut(serializers.ModelSerializer):
    verified = serializers.SerializerMethodField()

    class Meta:
        model = Licence
        fields = ["id", "jurisdiction", "number", "expires_on", "verified", "verified_at"]

    def get_verified(self, licence: Licence) -> bool:
        return licence.verified_at is not None


class AdminLicenceOut(LicenceOut):
    therapist = serializers.UUIDField(source="therapist_id")
    verified_by = serializers.UUIDField(source="verified_by_id", allow_null=True)

    class Meta(LicenceOut.Meta):
        fields = [*LicenceOut.Meta.fields, "therapist", "verified_by"]


# --- External calendars and feed tokens ---------------------------------------------------------


class CalendarIn(StrictInputSerializer):
    name = serializers.CharField(max_length=80)
    source = serializers.ChoiceField(choices=CalendarSource.choices)  # type: ignore[assignment]
    ics = serializers.CharField(required=False, trim_whitespace=False, help_text="for upload")
    url = serializers.CharField(required=False, max_length=2000, help_text="for url")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        needs, other = (
            ("ics", "url") if attrs["source"] == CalendarSource.UPLOAD else ("url", "ics")
        )
        if needs not in attrs or other in attrs:
            raise serializers.ValidationError(
                {needs: [f"Required for source {attrs['source']!r} (and {other} is not allowed)."]}
            )
        return attrs


class CalendarOut(serializers.ModelSerializer):
    class Meta:
        model = ExternalCalendar
        fields = ["id", "name", "source", "url_host", "last_synced_at", "last_error", "created_at"]


class FeedTokenOut(serializers.ModelSerializer):
    class Meta:
        model = CalendarFeedToken
        fields = ["id", "created_at", "revoked_at"]


class FeedTokenCreatedOut(serializers.Serializer):
    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    url = serializers.CharField(help_text="Shown once: the secret feed address.")


# --- Public directory and slots -----------------------------------------------------------------


class PublicSessionTypeOut(SessionTypeOut):
    class Meta(SessionTypeOut.Meta):
        fields = [f for f in SessionTypeOut.Meta.fields if f != "is_active"]


class DirectoryItemOut(CardListsMixin, serializers.ModelSerializer):
    """A listed therapist; lists come from the directory card, jurisdictions are those of the
    verified licences not expired today (UTC)."""

    jurisdictions = serializers.SerializerMethodField()
    session_types = serializers.SerializerMethodField()

    class Meta:
        model = TherapistProfile
        fields = [
            "id",
            "display_name",
            "pronouns",
            "bio",
            "photo_url",
            "time_zone",
            "accepting_new_clients",
            "specialties",
            "modalities",
            "languages",
            "jurisdictions",
            "session_types",
            "next_open_slot",
        ]

    def get_jurisdictions(self, profile: TherapistProfile) -> list[str]:
        today = timezone.now().date().isoformat()
        licences = profile.card.get("licences", [])
        return sorted({lic["jurisdiction"] for lic in licences if lic["expires_on"] >= today})

    @extend_schema_field(PublicSessionTypeOut(many=True))
    def get_session_types(self, profile: TherapistProfile) -> list[dict[str, Any]]:
        return list(profile.card.get("session_types", []))


class SlotsQuery(StrictInputSerializer):
    start = OffsetDateTimeField(bounds=THIS_CENTURY)
    end = OffsetDateTimeField(bounds=THIS_CENTURY)
    session_type = serializers.UUIDField()
    tz = serializers.CharField(max_length=64, validators=[validate_zone], default="UTC")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["end"] <= attrs["start"]:
            raise serializers.ValidationError({"end": ["Must be after start."]}, code="invalid")
        if attrs["end"] - attrs["start"] > MAX_SLOT_RANGE:
            raise serializers.ValidationError(
                {"end": [f"The range may span at most {MAX_SLOT_RANGE.days} days."]},
                code="range_too_long",
            )
        return attrs


@extend_schema_field(OpenApiTypes.DATETIME)
class ZonedDateTimeText(serializers.CharField):
    """An instant already rendered as ISO 8601 text in the zone the client asked for."""


class SlotOut(serializers.Serializer):
    start = ZonedDateTimeText(help_text="ISO 8601 in the requested time zone")
    end = ZonedDateTimeText(help_text="ISO 8601 in the requested time zone")


class SlotsOut(serializers.Serializer):
    therapist = serializers.UUIDField()
    session_type = serializers.UUIDField()
    time_zone = serializers.CharField()
    slots = SlotOut(many=True)


def slots_payload(
    *, therapist_id: Any, session_type: SessionType, starts: list[datetime], tz: str
) -> dict[str, Any]:
    zone = ZoneInfo(tz)
    length = timedelta(minutes=session_type.duration_minutes)
    return {
        "therapist": therapist_id,
        "session_type": session_type.pk,
        "time_zone": tz,
        "slots": [
            {
                "start": s.astimezone(zone).isoformat(),
                "end": (s + length).astimezone(zone).isoformat(),
            }
            for s in starts
        ],
    }
