"""Payments, their history, refunds, and every Stripe event received.

Money is integer minor units plus an upper-case ISO 4217 code. Stripe is the source of truth for a
payment's state; ours follows it through a monotonic state machine (``Payment.State``), so events
delivered late or out of order can never move a payment backwards.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from audit.registry import protected


class StripeCustomer(models.Model):
    """The Stripe Customer of one of our users: created once, holds no name, email or notes."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stripe_customer"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"StripeCustomer {self.pk}"


class PaymentPurpose(models.TextChoices):
    SESSION = "session"
    LATE_CANCELLATION_FEE = "late_cancellation_fee"
    NO_SHOW_FEE = "no_show_fee"


class PaymentState(models.TextChoices):
    CREATED = "created"  # our row exists; Stripe has no intent yet
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELED = "canceled"
    # Ours, for a fee charged off-session: Stripe declined it, asked for authentication the
    # client is not there to give, or there was no saved card. Final for this version; the next
    # attempt is a new version (its own idempotency key).
    FAILED = "failed"


# A payment for a session discloses that its client receives therapy: it is PHI. Its client is
# the booking's client (copied when the payment is made, so the audit needs no join).
@protected("billing.payment", patient=lambda payment: payment.client_id)
class Payment(models.Model):
    """One attempt to collect money for a booking: a session price or a fee.

    A new ``version`` is made
    only when the previous attempt can no longer succeed (its intent was canceled), so a retried
    or double-clicked request always lands on the same row and the same Stripe idempotency key.
    """

    Purpose = PaymentPurpose
    State = PaymentState

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.ForeignKey(
        "scheduling.Booking", on_delete=models.PROTECT, related_name="payments"
    )
    purpose = models.CharField(max_length=32, choices=PaymentPurpose.choices)
    version = models.PositiveIntegerField(default=1)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payments"
    )
    therapist = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="payments_received",
        null=True,
        blank=True,
    )
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_captured_minor = models.BigIntegerField(default=0)
    amount_refunded_minor = models.BigIntegerField(default=0)
    state = models.CharField(
        max_length=32, choices=PaymentState.choices, default=PaymentState.CREATED
    )
    stripe_customer_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    disputed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["booking", "purpose", "version"], name="payment_booking_purpose_version"
            ),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="payment_amount_positive"),
            models.CheckConstraint(condition=Q(version__gte=1), name="payment_version_positive"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="payment_currency_iso"
            ),
            models.CheckConstraint(
                condition=Q(amount_captured_minor__gte=0)
                & Q(amount_captured_minor__lte=F("amount_minor")),
                name="payment_captured_within_amount",
            ),
            models.CheckConstraint(
                condition=Q(amount_refunded_minor__gte=0)
                & Q(amount_refunded_minor__lte=F("amount_captured_minor")),
                name="payment_refunded_within_captured",
            ),
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in PaymentState]), name="payment_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=[p.value for p in PaymentPurpose]),
                name="payment_purpose_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["client", "-created_at"], name="payment_client_recent"),
            models.Index(fields=["therapist", "-created_at"], name="payment_therapist_recent"),
        ]

    def __str__(self) -> str:
        return f"Payment {self.pk}"

    @property
    def refundable_minor(self) -> int:
        return self.amount_captured_minor - self.amount_refunded_minor


class PaymentEvent(models.Model):
    """One change of a payment's state: from, to, when and why (append-only)."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="history")
    from_state = models.CharField(max_length=32, choices=Payment.State.choices)
    to_state = models.CharField(max_length=32, choices=Payment.State.choices)
    occurred_at = models.DateTimeField()
    reason = models.CharField(max_length=64)
    stripe_event_id = models.CharField(max_length=255, blank=True)

    class Meta:
        indexes = [models.Index(fields=["payment", "occurred_at"], name="paymentevent_payment")]

    def __str__(self) -> str:
        return f"PaymentEvent {self.pk}"


class Refund(models.Model):
    """Money given back from one payment. ``(payment, sequence)`` names it, and its Stripe
    idempotency key, so a retried refund request can never refund twice."""

    class Reason(models.TextChoices):
        CLIENT_CANCELLED_IN_TIME = "client_cancelled_in_time"
        CLIENT_CANCELLED_LATE = "client_cancelled_late"  # the part above the late fee
        HOLD_RELEASED = "hold_released"
        THERAPIST_CANCELLED = "therapist_cancelled"
        THERAPIST_NO_SHOW = "therapist_no_show"
        CLIENT_NO_SHOW = "client_no_show"  # the part above the no-show fee
        SLOT_LOST = "slot_lost"  # paid after the hold expired and the slot was taken
        GOODWILL = "goodwill"

    class State(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELED = "canceled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    sequence = models.PositiveIntegerField()
    amount_minor = models.BigIntegerField()
    reason = models.CharField(max_length=32, choices=Reason.choices)
    idempotency_key = models.CharField(max_length=255, unique=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    stripe_refund_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["payment", "sequence"], name="refund_payment_sequence"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="refund_amount_positive"),
        ]

    def __str__(self) -> str:
        return f"Refund {self.pk}"


class StripeEvent(models.Model):
    """Every webhook event received. The unique ``event_id``, inserted in the same transaction as
    the event's effect, is what makes each event apply exactly once."""

    class Outcome(models.TextChoices):
        APPLIED = "applied"
        STALE = "stale"  # valid, but older than what we know: no change
        IGNORED_LIVEMODE = "ignored_livemode"
        UNKNOWN_OBJECT = "unknown_object"  # not one of our intents
        UNHANDLED_TYPE = "unhandled_type"

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=128)
    livemode = models.BooleanField()
    object_id = models.CharField(max_length=255, blank=True)
    stripe_created_at = models.DateTimeField()
    received_at = models.DateTimeField()
    outcome = models.CharField(max_length=32, choices=Outcome.choices)
    payment = models.ForeignKey(
        Payment, on_delete=models.PROTECT, related_name="stripe_events", null=True, blank=True
    )

    class Meta:
        indexes = [models.Index(fields=["received_at"], name="stripeevent_received")]

    def __str__(self) -> str:
        return f"StripeEvent {self.event_id}"


class ProviderBilling(models.Model):
    """A therapist's billing identity: the NPI printed on superbills and receipts, and (when
    Connect is on) the Stripe connected account that receives their payouts."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="provider_billing"
    )
    npi = models.CharField(max_length=10, blank=True)
    stripe_account_id = models.CharField(max_length=255, blank=True)
    payouts_enabled = models.BooleanField(default=False)
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(npi="") | Q(npi__regex=r"^[0-9]{10}$"), name="provider_npi_shape"
            )
        ]

    def __str__(self) -> str:
        return f"ProviderBilling {self.pk}"


class Transfer(models.Model):
    """A therapist's share of a completed session's payment, sent to their connected account
    (Stripe Connect, separate charges and transfers). ``amount + fee = the payment's net``, in
    integer minor units. ``held`` when their account cannot receive payouts yet."""

    class State(models.TextChoices):
        HELD = "held"
        SENT = "sent"
        REVERSED = "reversed"  # in full

    payment = models.OneToOneField(Payment, on_delete=models.PROTECT, related_name="transfer")
    destination = models.CharField(max_length=255, blank=True)
    amount_minor = models.BigIntegerField()
    fee_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_reversed_minor = models.BigIntegerField(default=0)
    reversals = models.PositiveIntegerField(default=0)  # names each reversal's idempotency key
    state = models.CharField(max_length=16, choices=State.choices)
    stripe_transfer_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(amount_minor__gt=0), name="transfer_amount_positive"
            ),
            models.CheckConstraint(condition=Q(fee_minor__gte=0), name="transfer_fee_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_reversed_minor__gte=0)
                & Q(amount_reversed_minor__lte=F("amount_minor")),
                name="transfer_reversed_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"Transfer {self.pk}"


class SetupState(models.TextChoices):
    """A SetupIntent's status at Stripe (a subset of which we ever see for cards)."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CANCELED = "canceled"


class PaymentMethodSetup(models.Model):
    """One SetupIntent we created for a client to save a card for later (off-session) fees.

    ``(client, version)`` names it and its Stripe idempotency key; a new version is made only
    when the previous one succeeded or was canceled, so a retried request reuses the open one.
    The stored SetupIntent id is the only link from a Stripe event to a client."""

    State = SetupState

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payment_method_setups"
    )
    version = models.PositiveIntegerField()
    stripe_customer_id = models.CharField(max_length=255)
    stripe_setup_intent_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    state = models.CharField(
        max_length=32, choices=SetupState.choices, default=SetupState.REQUIRES_PAYMENT_METHOD
    )
    last_error_code = models.CharField(max_length=64, blank=True)
    # The card Stripe attached when the setup succeeded, saved as a ``SavedPaymentMethod`` by
    # a task after the webhook's commit (``billing.services.methods.setup_card_save``).
    stripe_payment_method_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "version"], name="setup_client_version"),
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in SetupState]), name="setup_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"PaymentMethodSetup {self.pk}"


# A client's card (brand, last four, expiry) on a therapy platform ties the card to someone in
# care: protected like the payments it pays for.
@protected("billing.payment_method", patient=lambda method: method.client_id)
class SavedPaymentMethod(models.Model):
    """A card a client saved through a SetupIntent: Stripe's id and what the client needs to
    recognise it (brand, last four digits, expiry), nothing else. Off-session fees are charged
    to the card the client chose (``is_default``: at most one per client, enforced by the
    database, never a removed card), or else to the most recently saved card not removed."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="saved_payment_methods"
    )
    setup = models.ForeignKey(
        PaymentMethodSetup, on_delete=models.PROTECT, related_name="saved_methods"
    )
    stripe_payment_method_id = models.CharField(max_length=255, unique=True)
    brand = models.CharField(max_length=32)
    last4 = models.CharField(max_length=4)
    exp_month = models.PositiveSmallIntegerField()
    exp_year = models.PositiveSmallIntegerField()
    created_at = models.DateTimeField()
    detached_at = models.DateTimeField(null=True, blank=True)
    is_default = models.BooleanField(default=False)  # chosen by the client

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(last4__regex=r"^[0-9]{4}$"), name="method_last4"),
            models.CheckConstraint(
                condition=Q(exp_month__gte=1) & Q(exp_month__lte=12), name="method_exp_month"
            ),
            models.UniqueConstraint(
                fields=["client"], condition=Q(is_default=True), name="method_one_default"
            ),
            models.CheckConstraint(
                condition=Q(is_default=False) | Q(detached_at__isnull=True),
                name="method_default_not_detached",
            ),
        ]
        indexes = [
            models.Index(
                fields=["client", "-created_at"],
                condition=Q(detached_at__isnull=True),
                name="method_client_active",
            )
        ]

    def __str__(self) -> str:
        return f"SavedPaymentMethod {self.pk}"


# --- The development gateway's own state (billing/gateways/dev.py; DEBUG only) -----------------


class DevGatewayObject(models.Model):
    """One object of the development gateway, in Stripe's JSON shape (``data``): a customer,
    PaymentIntent, SetupIntent, payment method, refund or transfer. Tables rather than memory so
    every process of ``make run`` sees the same "Stripe". Never written in production."""

    id = models.CharField(primary_key=True, max_length=64)  # Stripe-like: pi_dev_…, seti_dev_…
    kind = models.CharField(max_length=32)
    # The creating request's idempotency key and a hash of its parameters (Stripe's replay rule).
    idempotency_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    request_hash = models.CharField(max_length=64, blank=True)
    data = models.JSONField()
    created = models.BigIntegerField()  # epoch seconds, as Stripe's ``created``

    class Meta:
        indexes = [models.Index(fields=["kind", "created"], name="devgw_object_kind_created")]

    def __str__(self) -> str:
        return f"DevGatewayObject {self.pk}"


class DevGatewayEvent(models.Model):
    """An event the development gateway owes the webhook endpoint: kept until delivered (signed,
    through ``billing.services.webhooks.webhook_receive``), so none is ever silently lost."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERING = "delivering"  # claimed by one deliverer (a stale claim is taken over)
        DELIVERED = "delivered"

    event_id = models.CharField(max_length=64, unique=True)
    type = models.CharField(max_length=128)
    body = models.TextField()  # the exact JSON that is signed and delivered
    created_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=32, blank=True)  # StripeEvent.Outcome, or "duplicate"
    last_error = models.CharField(max_length=128, blank=True)

    class Meta:
        indexes = [models.Index(fields=["state", "id"], name="devgw_event_state")]

    def __str__(self) -> str:
        return f"DevGatewayEvent {self.event_id}"
