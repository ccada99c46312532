"""The directory's filters (django-filter). Each is an indexed ``EXISTS`` or a column test.

"Has an open slot between A and B" reads the precomputed ``OpenSlotRun`` summary, exact to the
therapist's slot step; the slots endpoint gives the exact times.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from drf_spectacular.contrib.django_filters import DjangoFilterExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from scheduling.models import (
    Attribute,
    Delivery,
    OpenSlotRun,
    SessionType,
    TherapistAttribute,
    TherapistProfile,
)
from scheduling.selectors import current_licences
from scheduling.services import SUMMARY_DAYS


class EmptyFiltersNothing(DjangoFilterExtension):
    """django-filter ignores a parameter sent empty (``?delivery=`` filters nothing, as a web
    form sends it): the schema says so with ``allowEmptyValue``, so a generated empty value is
    valid (API-04). Replaces drf-spectacular's own extension for every ``FilterSet``."""

    priority = 1

    def get_schema_operation_parameters(self, auto_schema: Any, *args: Any, **kwargs: Any) -> Any:
        parameters = super().get_schema_operation_parameters(auto_schema, *args, **kwargs)
        for parameter in parameters:
            if parameter.get("in") == "query":
                parameter["allowEmptyValue"] = True
        return parameters


class _DirectoryForm(forms.Form):
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("available_from"), data.get("available_to")
        if (start is None) != (end is None):
            raise forms.ValidationError(
                "available_from and available_to go together.", code="invalid"
            )
        if start is not None and end is not None:
            now = timezone.now()
            if end <= start:
                self.add_error(
                    "available_to",
                    forms.ValidationError("Must be after available_from.", code="invalid"),
                )
            elif end > now + timedelta(days=SUMMARY_DAYS):
                self.add_error(
                    "available_to",
                    forms.ValidationError(
                        f"The directory looks at most {SUMMARY_DAYS} days ahead.",
                        code="range_too_long",
                    ),
                )
        low, high = data.get("price_min"), data.get("price_max")
        if low is not None and high is not None and high < low:
            self.add_error(
                "price_max", forms.ValidationError("Must not be below price_min.", code="invalid")
            )
        return data


MAX_PRICE = 10**9  # minor units; beyond any session's price (and the database's integers)
_PRICE = {
    "type": "number",
    "minimum": 0,
    "maximum": MAX_PRICE,
    "description": "A session type's price, in minor units of its currency (cents)",
}


def _has_attribute(kind: str, value: str) -> Exists:
    return Exists(
        TherapistAttribute.objects.filter(therapist=OuterRef("pk"), kind=kind, value=value)
    )


class TherapistDirectoryFilter(django_filters.FilterSet):
    specialty = django_filters.CharFilter(method="filter_specialty", max_length=40)
    modality = django_filters.CharFilter(method="filter_modality", max_length=40)
    language = django_filters.CharFilter(method="filter_language", max_length=16)
    jurisdiction = django_filters.CharFilter(
        method="filter_jurisdiction",
        max_length=6,
        help_text="The client's location (ISO 3166-2): a current licence there",
    )
    price_min = extend_schema_field(_PRICE)(
        django_filters.NumberFilter(method="filter_price", min_value=0, max_value=MAX_PRICE)
    )
    price_max = extend_schema_field(_PRICE)(
        django_filters.NumberFilter(method="filter_price", min_value=0, max_value=MAX_PRICE)
    )
    currency = extend_schema_field(
        {"type": "string", "maxLength": 3, "description": "ISO 4217, e.g. USD"}
    )(django_filters.CharFilter(method="filter_price", max_length=3))
    delivery = django_filters.ChoiceFilter(choices=Delivery.choices, method="filter_delivery")
    # Exactly "true" or "false", as generated clients send a boolean query parameter.
    accepting_new_clients = extend_schema_field(OpenApiTypes.BOOL)(
        django_filters.TypedChoiceFilter(
            choices=[("true", "true"), ("false", "false")], coerce=lambda v: v == "true"
        )
    )
    q = django_filters.CharFilter(method="filter_text", min_length=2, max_length=100)
    available_from = django_filters.IsoDateTimeFilter(method="filter_available")
    available_to = django_filters.IsoDateTimeFilter(method="filter_available")

    class Meta:
        model = TherapistProfile
        fields = ["accepting_new_clients"]
        form = _DirectoryForm

    def filter_specialty(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        return qs.filter(_has_attribute(Attribute.SPECIALTY, value))

    def filter_modality(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        return qs.filter(_has_attribute(Attribute.MODALITY, value))

    def filter_language(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        return qs.filter(_has_attribute(Attribute.LANGUAGE, value))

    def filter_jurisdiction(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        licensed = current_licences(today=timezone.now().date()).filter(
            therapist=OuterRef("pk"), jurisdiction=value
        )
        return qs.filter(Exists(licensed))

    def filter_delivery(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        offered = SessionType.objects.filter(
            therapist=OuterRef("pk"), is_active=True, delivery=value
        )
        return qs.filter(Exists(offered))

    def filter_price(self, qs: QuerySet, name: str, value: Any) -> QuerySet:
        # One EXISTS for the three price parameters together (applied once, by the first).
        if getattr(self, "_price_done", False):
            return qs
        self._price_done = True
        data = self.form.cleaned_data
        condition = Q(therapist=OuterRef("pk"), is_active=True)
        if data.get("price_min") is not None:
            condition &= Q(price_minor__gte=int(data["price_min"]))
        if data.get("price_max") is not None:
            condition &= Q(price_minor__lte=int(data["price_max"]))
        if data.get("currency"):
            condition &= Q(currency=data["currency"])
        return qs.filter(Exists(SessionType.objects.filter(condition)))

    def filter_text(self, qs: QuerySet, name: str, value: str) -> QuerySet:
        return qs.filter(Q(display_name__icontains=value) | Q(bio__icontains=value))

    def filter_available(self, qs: QuerySet, name: str, value: datetime) -> QuerySet:
        if name != "available_from":
            return qs
        start = max(value, timezone.now())
        end = self.form.cleaned_data["available_to"]
        runs = OpenSlotRun.objects.filter(
            therapist=OuterRef("pk"), last_start__gte=start, first_start__lt=end
        )
        return qs.filter(Exists(runs))
