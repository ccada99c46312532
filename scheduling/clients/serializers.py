"""Client profile input (strict) and output."""

from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from api.serializers import StrictInputSerializer
from scheduling.bookings.serializers import JURISDICTION
from scheduling.clients.services import E164, PHONE_TEXT, normalize_phone


class PhoneField(serializers.CharField):
    """A phone number in E.164 once spaces, dashes, dots and brackets are removed (the schema
    states it as a pattern)."""

    default_error_messages = {"e164": "Give the number in international form: +<country><number>."}
    MAX_LENGTH = 32

    def __init__(self, **kwargs: Any):
        super().__init__(
            max_length=self.MAX_LENGTH, validators=[RegexValidator(PHONE_TEXT)], **kwargs
        )

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if len(text) > self.MAX_LENGTH:  # as typed: max_length alone would see the digits only
            self.fail("max_length", max_length=self.MAX_LENGTH)
        value = normalize_phone(text)
        if not E164.match(value):
            self.fail("e164")
        return value


class EmergencyContactIn(StrictInputSerializer):
    name = serializers.CharField(max_length=150)
    phone = PhoneField()
    relationship = serializers.CharField(max_length=40, allow_blank=True, default="")


class ClientProfileIn(StrictInputSerializer):
    date_of_birth = serializers.DateField(allow_null=True, default=None)
    phone = PhoneField(allow_blank=True, default="")
    emergency_contact = EmergencyContactIn(allow_null=True, default=None)
    home_jurisdiction = serializers.RegexField(JURISDICTION, allow_blank=True, default="")


class PhoneLookupIn(StrictInputSerializer):
    phone = PhoneField()


class EmergencyContactOut(serializers.Serializer):
    name = serializers.CharField()
    phone = serializers.CharField()
    relationship = serializers.CharField()


class ClientProfileOut(serializers.Serializer):
    client = serializers.UUIDField(source="user_id")
    full_name = serializers.CharField(source="user.full_name")
    date_of_birth = serializers.DateField(source="details.date_of_birth", allow_null=True)
    phone = serializers.CharField(source="details.phone")
    emergency_contact = EmergencyContactOut(source="details.emergency_contact", allow_null=True)
    home_jurisdiction = serializers.CharField()
    updated_at = serializers.DateTimeField()
