"""The payment state machine: monotonic, so late or reordered events never move a payment back.

States are ranked along the way a payment goes. An event may move a payment up the ranks; an
event for a lower rank is stale and changes nothing. The rank-1 states (waiting for the client)
move freely among themselves: a failed 3-D Secure attempt goes back to ``requires_payment_method``.
``canceled`` is reachable only before the money is taken; a collected state arriving after
``canceled`` contradicts what we know, so the caller asks Stripe for the truth. ``failed`` (ours:
an off-session fee charge that could not be made) is final like ``canceled``.
"""

from __future__ import annotations

import enum

from django.db import models

from billing.models import Payment

S = Payment.State

RANK: dict[str, int] = {
    S.CREATED: 0,
    S.REQUIRES_PAYMENT_METHOD: 1,
    S.REQUIRES_CONFIRMATION: 1,
    S.REQUIRES_ACTION: 1,
    S.PROCESSING: 2,
    S.REQUIRES_CAPTURE: 3,
    S.SUCCEEDED: 4,
    S.PARTIALLY_REFUNDED: 5,
    S.REFUNDED: 6,
    S.CANCELED: 4,
    S.FAILED: 4,
}
COLLECTED = frozenset({S.SUCCEEDED, S.PARTIALLY_REFUNDED, S.REFUNDED})
ENDED = frozenset({S.CANCELED, S.FAILED})  # this version can no longer collect anything
# Waiting for the client (a card, a confirmation, 3-D Secure): nothing is charged yet.
WAITING = frozenset({S.REQUIRES_PAYMENT_METHOD, S.REQUIRES_CONFIRMATION, S.REQUIRES_ACTION})
_WAITING = 1
_LAST_CANCELABLE = RANK[S.REQUIRES_CAPTURE]


class Decision(enum.Enum):
    APPLY = "apply"
    STALE = "stale"  # nothing to do: the payment already knows this or more
    CONFLICT = "conflict"  # contradicts what we know: re-read the intent from Stripe


def decide(current: str, target: str) -> Decision:
    if current == target:
        return Decision.STALE
    if current in ENDED:
        return Decision.CONFLICT if target in COLLECTED else Decision.STALE
    if target == S.CANCELED:
        return Decision.APPLY if RANK[current] <= _LAST_CANCELABLE else Decision.STALE
    if RANK[target] > RANK[current] or RANK[target] == RANK[current] == _WAITING:
        return Decision.APPLY
    return Decision.STALE


def state_of_intent(status: str) -> str:
    """Our state for a Stripe PaymentIntent status (which are a subset of our states)."""
    return S(status).value


def state_of_amounts(*, captured: int, refunded: int) -> str:
    """The collected state that a captured and a refunded amount describe."""
    if refunded <= 0:
        return S.SUCCEEDED
    return S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED


class ApiState(models.TextChoices):
    """A payment's state as the API shows it (``PaymentOut.state``, a booking's
    ``payment.state``): one spelling, ours, whatever Stripe says.

    Stored states stay Stripe's words (webhooks and the reconciliation compare them as they
    come); they are mapped here, at the edge. ``canceled`` is shown ``cancelled``, as bookings
    spell it, and ``refund_pending`` is ours: money is owed back (a cancellation in time, a
    late one's part above the fee) or a refund is on its way, and Stripe has not confirmed it.
    """

    CREATED = "created", "Our record exists; Stripe has no intent yet."
    REQUIRES_PAYMENT_METHOD = (
        "requires_payment_method",
        "Waiting for the client to give a card (or a new one after a decline).",
    )
    REQUIRES_CONFIRMATION = "requires_confirmation", "Waiting for the client to confirm."
    REQUIRES_ACTION = "requires_action", "Waiting for the client to authenticate (3-D Secure)."
    PROCESSING = "processing", "Stripe is processing the payment."
    REQUIRES_CAPTURE = "requires_capture", "Authorized, not yet captured."
    SUCCEEDED = "succeeded", "Paid."
    REFUND_PENDING = (
        "refund_pending",
        "Paid, and money is owed back or a refund is on its way; Stripe has not confirmed it.",
    )
    PARTIALLY_REFUNDED = "partially_refunded", "Paid; part of it refunded (confirmed)."
    REFUNDED = "refunded", "Paid; all of it refunded (confirmed)."
    CANCELLED = "cancelled", "Cancelled before any money was taken (Stripe: canceled)."
    FAILED = "failed", "A fee that could not be charged (declined, no card, or not authenticated)."


# Stripe's word (stored) to ours (shown) where they differ.
_SHOWN: dict[str, ApiState] = {S.CANCELED: ApiState.CANCELLED}


def api_state(state: str, *, refund_pending: bool = False) -> str:
    """The state the API shows for a stored ``state``. ``refund_pending``: a refund of this
    payment is pending at Stripe, or owed by a cancellation billing has not processed yet."""
    if refund_pending and state in COLLECTED:
        return ApiState.REFUND_PENDING.value
    return (_SHOWN.get(state) or ApiState(state)).value
