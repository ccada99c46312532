"""Reads of billing data."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import (
    BooleanField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
)

from api.models import Role, User
from billing import states
from billing.models import Payment, Refund, SavedPaymentMethod
from scheduling.bookings.selectors import fee_requests_refund_owed

if TYPE_CHECKING:
    from scheduling.models import Booking


def payments_created_between(*, start: datetime, end: datetime) -> QuerySet[Payment]:
    """Payments with a Stripe intent, created in ``[start, end)``, oldest first."""
    return (
        Payment.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(stripe_payment_intent_id=None)
        .order_by("created_at", "pk")
    )


def payments_visible_to(*, user: User, booking_id: uuid.UUID | None = None) -> QuerySet[Payment]:
    """A client's own payments, or the payments for a therapist's sessions; with
    ``booking_id``, only that booking's (none when it is not theirs)."""
    mine = (
        Payment.objects.filter(therapist=user)
        if user.role == Role.THERAPIST
        else (Payment.objects.filter(client=user))
    )
    if booking_id is not None:
        mine = mine.filter(booking_id=booking_id)
    return with_refund_pending(mine).order_by("-created_at", "-pk")


def with_refund_pending(payments: QuerySet[Payment]) -> QuerySet[Payment]:
    """``payments`` annotated with ``refund_pending``: a refund of the payment is pending at
    Stripe, or (a session payment) its booking's cancellation owes money back and billing has
    not processed it yet. Two ``EXISTS`` in the same query: no query per row."""
    pending_refund = Refund.objects.filter(payment=OuterRef("pk"), state=Refund.State.PENDING)
    owed = fee_requests_refund_owed().filter(booking=OuterRef("booking_id"))
    return payments.annotate(
        refund_pending=ExpressionWrapper(
            Q(Exists(pending_refund)) | Q(Exists(owed), purpose=Payment.Purpose.SESSION),
            output_field=BooleanField(),
        )
    )


def payment_api_state(payment: Payment) -> str:
    """The state the API shows for ``payment`` (``states.api_state``). Reads the
    ``refund_pending`` annotation when the payment came from ``with_refund_pending``, else asks
    the database (only for a collected payment: nothing else can have a refund pending)."""
    if payment.state not in states.COLLECTED:
        return states.api_state(payment.state)
    pending = getattr(payment, "refund_pending", None)
    if pending is None:
        annotated = with_refund_pending(Payment.objects.filter(pk=payment.pk)).first()
        pending = getattr(annotated, "refund_pending", False)
    return states.api_state(payment.state, refund_pending=bool(pending))


def booking_session_payments() -> QuerySet[Payment]:
    """Session payments, latest version first, annotated for ``payment_api_state``: the
    queryset a booking list prefetches (one query for a whole page of bookings)."""
    return with_refund_pending(Payment.objects.filter(purpose=Payment.Purpose.SESSION)).order_by(
        "booking_id", "-version"
    )


def booking_session_payments_prefetch() -> Prefetch[Any]:
    """What every booking read prefetches for ``booking_session_payment`` (billing's
    contribution to scheduling's reads: ``scheduling.bookings.contributions``)."""
    return Prefetch("payments", queryset=booking_session_payments(), to_attr="session_payments")


def booking_session_payments_none(booking: Booking) -> None:
    """Marks a booking inserted in this transaction as having no session payment (what the
    prefetch would find): a payment starts only with /pay, on a booking that exists."""
    booking.session_payments = []  # type: ignore[attr-defined]  # the prefetch's to_attr


def booking_session_payment(booking: Booking) -> Payment | None:
    """The booking's latest session payment: from the prefetch ``session_payments`` when the
    booking has it (``booking_session_payments``), else one query."""
    prefetched = getattr(booking, "session_payments", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return booking_session_payments().filter(booking_id=booking.pk).first()


def payment_methods_active(*, client_id: uuid.UUID) -> QuerySet[SavedPaymentMethod]:
    """A client's saved cards that are not removed, the default first: the one they chose,
    or else the one saved last; then the newest first."""
    return SavedPaymentMethod.objects.filter(client_id=client_id, detached_at=None).order_by(
        "-is_default", "-created_at", "-pk"
    )


def payment_method_default(*, client_id: uuid.UUID) -> SavedPaymentMethod | None:
    """The card off-session fees are charged to: the one the client chose, or else (none
    chosen, or the chosen one removed) the one saved last."""
    return payment_methods_active(client_id=client_id).first()
