"""Receipts and superbills: read-only documents built from payments and their bookings.

A receipt is per payment; a superbill is per client and calendar month (dates of service in the
therapist's zone), listing for each session the provider (name, licences, NPI), the CPT code of
its session type, and what was paid net of refunds — what an insurer asks for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from django.db.models import Q

from api.errors import NotFoundError
from api.models import Role, User
from billing import states
from billing.models import Payment, PaymentEvent, ProviderBilling
from scheduling.bookings.selectors import BookingStatus

if TYPE_CHECKING:
    from scheduling.models import TherapistProfile


def npi_is_valid(npi: str) -> bool:
    """A 10-digit NPI whose last digit is the Luhn check digit over ``80840`` + the first nine."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    digits = [int(d) for d in "80840" + npi[:9]]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10 == int(npi[9])


@dataclass(frozen=True)
class Provider:
    name: str
    npi: str
    licences: list[str]  # "US-NY 12345"


@dataclass(frozen=True)
class Receipt:
    number: str
    payment_id: uuid.UUID
    paid_at: datetime | None
    date_of_service: date
    provider: Provider
    service: str
    amount_paid_minor: int
    amount_refunded_minor: int
    net_minor: int
    currency: str


@dataclass(frozen=True)
class SuperbillLine:
    date_of_service: date
    cpt_code: str
    service: str
    duration_minutes: int
    provider: Provider
    amount_paid_minor: int
    currency: str


@dataclass(frozen=True)
class Superbill:
    client_id: uuid.UUID
    client_name: str
    month: str  # YYYY-MM
    lines: list[SuperbillLine]
    totals_minor: dict[str, int] = field(default_factory=dict)  # per currency
    payments: list[Payment] = field(default_factory=list)  # those the lines show (the audit's)


def _provider(profile: TherapistProfile, npis: dict[uuid.UUID, str]) -> Provider:
    licences = sorted(
        f"{licence.jurisdiction} {licence.number}"
        for licence in profile.licences.all()
        if licence.verified_at is not None
    )
    return Provider(name=profile.display_name, npi=npis.get(profile.user_id, ""), licences=licences)


def _npis(user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    return dict(ProviderBilling.objects.filter(user_id__in=user_ids).values_list("user_id", "npi"))


def _local_day(moment: datetime, zone: str) -> date:
    return moment.astimezone(ZoneInfo(zone)).date()


def receipt_payment(*, payment_id: uuid.UUID, user: User) -> Payment:
    """A collected payment, for its client or its therapist (else 404), with what its receipt
    shows."""
    mine = Q(client=user) if user.role == Role.CLIENT else Q(therapist=user)
    payment = (
        Payment.objects.select_related("booking__therapist", "booking__session_type")
        .prefetch_related("booking__therapist__licences")
        .filter(mine, pk=payment_id, state__in=states.COLLECTED)
        .first()
    )
    if payment is None:
        raise NotFoundError("No such receipt.")
    return payment


def receipt_for(*, payment: Payment) -> Receipt:
    """The receipt of a payment found by ``receipt_payment``."""
    booking = payment.booking
    paid_at = (
        PaymentEvent.objects.filter(payment=payment, to_state__in=states.COLLECTED)
        .order_by("occurred_at", "pk")
        .values_list("occurred_at", flat=True)
        .first()
    )
    return Receipt(
        number=f"R-{payment.pk.hex[:12].upper()}",
        payment_id=payment.pk,
        paid_at=paid_at,
        date_of_service=_local_day(booking.start, booking.therapist.time_zone),
        provider=_provider(booking.therapist, _npis({booking.therapist.user_id})),
        service=booking.session_type.name,
        amount_paid_minor=payment.amount_captured_minor,
        amount_refunded_minor=payment.amount_refunded_minor,
        net_minor=payment.amount_captured_minor - payment.amount_refunded_minor,
        currency=payment.currency,
    )


def superbill_for(*, client: User, year: int, month: int) -> Superbill:
    """The client's sessions of ``year-month`` that took place (confirmed or completed) and were
    paid, by date of service. Sessions fully refunded are left out."""
    first = date(year, month, 1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    payments = (
        Payment.objects.select_related("booking__therapist", "booking__session_type")
        .prefetch_related("booking__therapist__licences")
        .filter(
            client=client,
            purpose=Payment.Purpose.SESSION,
            state__in=[Payment.State.SUCCEEDED, Payment.State.PARTIALLY_REFUNDED],
            booking__status__in=[BookingStatus.CONFIRMED, BookingStatus.COMPLETED],
            # a day either side, then the exact local date below
            booking__start__date__gte=date.fromordinal(first.toordinal() - 1),
            booking__start__date__lt=date.fromordinal(after.toordinal() + 1),
        )
        .order_by("booking__start", "pk")
    )
    rows = list(payments)
    npis = _npis({p.booking.therapist.user_id for p in rows})
    lines: list[SuperbillLine] = []
    shown: list[Payment] = []
    totals: dict[str, int] = {}
    for payment in rows:
        booking = payment.booking
        day = _local_day(booking.start, booking.therapist.time_zone)
        if not first <= day < after:
            continue
        paid = payment.amount_captured_minor - payment.amount_refunded_minor
        lines.append(
            SuperbillLine(
                date_of_service=day,
                cpt_code=booking.session_type.cpt_code,
                service=booking.session_type.name,
                duration_minutes=booking.session_type.duration_minutes,
                provider=_provider(booking.therapist, npis),
                amount_paid_minor=paid,
                currency=payment.currency,
            )
        )
        totals[payment.currency] = totals.get(payment.currency, 0) + paid
        shown.append(payment)
    return Superbill(
        client_id=client.pk,
        client_name=client.full_name,
        month=f"{year:04d}-{month:02d}",
        lines=lines,
        totals_minor=totals,
        payments=shown,
    )


# Stripe's zero-decimal currencies (amounts are whole units).
_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())


def money(amount_minor: int, currency: str) -> str:
    """``12000, "USD"`` → ``"120.00 USD"`` (whole units for zero-decimal currencies)."""
    if currency in _ZERO_DECIMAL:
        return f"{amount_minor} {currency}"
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{units}.{cents:02d} {currency}"
