"""Billing endpoints. The Stripe webhook is the only one without a user: its proof is the
signature, checked over the raw body before anything is parsed.

Every endpoint that returns or changes a payment (``billing.payment``) or a saved card
(``billing.payment_method``) is an ``AuditedMixin`` view: its reads, lists, changes and denied
attempts are recorded by the mechanism (docs/audit.md); services only report what the view cannot
see (``touch`` / ``audit_access``). The webhook is the one exemption, named with its reason in the
route walk (``tests/audit/test_coverage.py``): its effects are audited as system events."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.template.response import TemplateResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.errors import PayloadTooLargeError
from api.idempotency import idempotent
from api.models import Role
from api.pagination import CursorPagination
from api.permissions import has_role
from api.serializers import problem_responses
from audit.mixins import AuditedMixin
from billing.documents import money
from billing.models import Payment, SavedPaymentMethod
from billing.selectors import payment_methods_active, payments_visible_to
from billing.serializers import (
    AuthenticateOut,
    PayIn,
    PaymentOut,
    PaymentsQuery,
    PayOut,
    ProviderBillingIn,
    ProviderBillingOut,
    ReceiptOut,
    SavedPaymentMethodOut,
    SetupOut,
    SuperbillOut,
    WebhookAckSerializer,
)
from billing.services.documents import receipt_read, superbill_read
from billing.services.fees import fee_payment_authenticate
from billing.services.methods import (
    payment_method_detach,
    payment_method_set_default,
    payment_method_setup_start,
)
from billing.services.payments import booking_payment_start
from billing.services.providers import provider_billing_set_npi
from billing.services.webhooks import webhook_receive


def _raw_body(request: HttpRequest, limit: int) -> bytes:
    """The body exactly as sent, refused past ``limit`` bytes before it is all read (PAY-18)."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError()
    body = request.read(limit + 1)
    if len(body) > limit:
        raise PayloadTooLargeError()
    return body


class StripeWebhookView(APIView):
    """POST only; no session, so no CSRF token (DRF views are CSRF-exempt unless they use session
    authentication, and this one has no authentication at all)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes: list[type] = []  # the body is read raw, never parsed before verification
    http_method_names = ["post"]
    # What it changes, for the route walk: not an AuditedMixin view (there is no user), it is
    # exempted there by name; each effect is audited as a system event by billing's services.
    audit_models = (Payment, SavedPaymentMethod)

    @extend_schema(
        operation_id="billing_stripe_webhook",
        summary="Receive a Stripe webhook event (signed with the endpoint secret)",
        request={"application/json": OpenApiTypes.OBJECT},
        description=(
            "400: bad, stale or missing signature, or a body that is not an event. "
            "413: body over the size limit. 503: no endpoint secret configured (fail closed)."
        ),
        responses={200: WebhookAckSerializer, **problem_responses(400, 405, 413, 503)},
        auth=[],
        tags=["billing"],
    )
    def post(self, request: Request) -> Response:
        payload = _raw_body(request._request, settings.STRIPE_WEBHOOK_MAX_BYTES)
        webhook_receive(
            payload=payload,
            signature_header=request.headers.get("Stripe-Signature", ""),
            now=timezone.now(),
        )
        return Response(WebhookAckSerializer({"received": True}).data)


class PayView(AuditedMixin, APIView):
    """``POST /api/v1/bookings/{id}/pay``: start (or resume) paying for a held booking."""

    # The URL names a booking: a denial is recorded against it (and its client); the payment
    # started is reported by the service (``billing.payment.start``).
    audit_resource = "scheduling.booking"
    audit_verb = "pay"
    audit_lookup_kwarg = "booking_id"
    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="booking_pay",
        summary="Pay for a held booking: returns the PaymentIntent's client secret",
        request=PayIn,
        responses={200: PayOut, **problem_responses(400, 401, 403, 404, 409, 422, 503)},
        tags=["billing"],
    )
    @idempotent
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        data = PayIn(data=request.data)
        data.is_valid(raise_exception=True)
        sheet = booking_payment_start(
            booking_id=booking_id,
            client=user_of(request),
            request=request,
            now=timezone.now(),
            stripe_version=data.validated_data.get("stripe_version"),
        )
        return Response(PayOut(sheet).data)


class PaymentPagination(CursorPagination):
    ordering = ("-created_at", "-id")


class PaymentsView(AuditedMixin, ListAPIView):
    """``GET /api/v1/billing/payments``: a client's payments, or those of a therapist's sessions.
    Each page read is audited: one row per client whose payments it shows."""

    # One ``list`` row per client, all in one INSERT (AUD-20).
    audit_resource = "billing.payment"
    permission_classes = [has_role(Role.CLIENT, Role.THERAPIST)]
    serializer_class = PaymentOut
    pagination_class = PaymentPagination

    def get_queryset(self) -> QuerySet[Payment]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Payment.objects.none()
        query = PaymentsQuery(data=self.request.query_params.dict())  # `?booking=` is 400
        query.is_valid(raise_exception=True)
        return payments_visible_to(
            user=user_of(self.request), booking_id=query.validated_data.get("booking")
        )

    @extend_schema(
        operation_id="billing_payments_list",
        summary="List payments (own, or for the therapist's sessions)",
        parameters=[PaymentsQuery],
        responses={200: PaymentOut(many=True), **problem_responses(400, 401, 403, 404)},
        tags=["billing"],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(PaymentOut(page, many=True).data)


class AuditedPaymentView(AuditedMixin, APIView):
    """Serves one payment, named by the ``payment_id`` URL keyword, through a document."""

    audit_resource = "billing.payment"
    audit_lookup_kwarg = "payment_id"
    audit_models = (Payment,)  # rendered by a plain serializer or a template: tell the route walk


class ReceiptView(AuditedPaymentView):
    """``GET /api/v1/billing/payments/{id}/receipt``: for the payment's client or its therapist,
    once collected; anything else is 404 and audited as denied."""

    permission_classes = [has_role(Role.CLIENT, Role.THERAPIST)]

    @extend_schema(
        operation_id="billing_receipt",
        summary="The receipt of a collected payment",
        responses={200: ReceiptOut, **problem_responses(401, 403, 404)},
        tags=["billing"],
    )
    def get(self, request: Request, payment_id: uuid.UUID) -> Response:
        receipt = receipt_read(payment_id=payment_id, user=user_of(request))
        return Response(ReceiptOut(receipt).data)


class ReceiptPrintView(AuditedPaymentView):
    """``GET /api/v1/billing/payments/{id}/receipt/print``: the same receipt as printable HTML."""

    permission_classes = [has_role(Role.CLIENT, Role.THERAPIST)]

    @extend_schema(
        operation_id="billing_receipt_print",
        summary="The receipt of a collected payment, as printable HTML",
        responses={(200, "text/html"): OpenApiTypes.STR, **problem_responses(401, 403, 404)},
        tags=["billing"],
    )
    def get(self, request: Request, payment_id: uuid.UUID) -> HttpResponseBase:
        receipt = receipt_read(payment_id=payment_id, user=user_of(request))
        return TemplateResponse(
            request._request,
            "billing/receipt.html",
            {
                "receipt": receipt,
                "paid": money(receipt.amount_paid_minor, receipt.currency),
                "refunded": money(receipt.amount_refunded_minor, receipt.currency),
                "net": money(receipt.net_minor, receipt.currency),
            },
        )


class PaymentAuthenticateView(AuditedPaymentView):
    """``POST /api/v1/billing/payments/{id}/authenticate``: the client's own fee that their bank
    wants them to authenticate (3-D Secure): the intent's client secret, for the app to confirm
    it with Stripe's SDK."""

    # The service reports ``billing.payment.authenticate``; a 404 is recorded as denied.
    audit_verb = "authenticate"
    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_payment_authenticate",
        summary="Get the client secret to authenticate a fee (3-D Secure) in the app",
        request=None,
        description="409 not_awaiting_authentication: not a fee waiting for the client.",
        responses={200: AuthenticateOut, **problem_responses(401, 403, 404, 409, 503)},
        tags=["billing"],
    )
    def post(self, request: Request, payment_id: uuid.UUID) -> Response:
        started = fee_payment_authenticate(
            payment_id=payment_id, client=user_of(request), request=request
        )
        return Response(AuthenticateOut(started).data)


YEARS = (2000, 2100)
MONTH_PARAMETERS = [
    OpenApiParameter(
        "year",
        {"type": "integer", "minimum": YEARS[0], "maximum": YEARS[1]},
        OpenApiParameter.PATH,
    ),
    OpenApiParameter(
        "month", {"type": "integer", "minimum": 1, "maximum": 12}, OpenApiParameter.PATH
    ),
]


def _month(year: int, month: int) -> None:
    """Each part is blamed on its own: a bad year is not a bad month (``MONTH_PARAMETERS``
    state the ranges in the schema)."""
    errors = {}
    if not YEARS[0] <= year <= YEARS[1]:
        errors["year"] = [f"Give a year between {YEARS[0]} and {YEARS[1]}."]
    if not 1 <= month <= 12:
        errors["month"] = ["Give a month from 1 to 12."]
    if errors:
        raise ValidationError(errors, code="invalid")


class AuditedSuperbillView(AuditedMixin, APIView):
    """Serves the payments of a client's month (the service ``touch``-es each one): one ``list``
    row naming them, and the month."""

    audit_resource = "billing.payment"
    audit_models = (Payment,)  # rendered by a plain serializer or a template: tell the route walk

    def audit_details(self) -> dict[str, Any]:
        return {
            **super().audit_details(),
            "month": f"{self.kwargs['year']:04d}-{self.kwargs['month']:02d}",
        }


class SuperbillView(AuditedSuperbillView):
    """``GET /api/v1/billing/superbills/{year}/{month}``: the client's own paid sessions of that
    month, for an insurer."""

    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_superbill",
        summary="A client's monthly superbill",
        parameters=MONTH_PARAMETERS,
        responses={200: SuperbillOut, **problem_responses(400, 401, 403)},
        tags=["billing"],
    )
    def get(self, request: Request, year: int, month: int) -> Response:
        _month(year, month)
        bill = superbill_read(client=user_of(request), year=year, month=month)
        return Response(SuperbillOut(bill).data)


class SuperbillPrintView(AuditedSuperbillView):
    """``GET /api/v1/billing/superbills/{year}/{month}/print``: the superbill as printable HTML."""

    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_superbill_print",
        summary="A client's monthly superbill, as printable HTML",
        parameters=MONTH_PARAMETERS,
        responses={(200, "text/html"): OpenApiTypes.STR, **problem_responses(400, 401, 403)},
        tags=["billing"],
    )
    def get(self, request: Request, year: int, month: int) -> HttpResponseBase:
        _month(year, month)
        bill = superbill_read(client=user_of(request), year=year, month=month)
        return TemplateResponse(
            request._request,
            "billing/superbill.html",
            {
                "bill": bill,
                "lines": [
                    (line, money(line.amount_paid_minor, line.currency)) for line in bill.lines
                ],
                "totals": [money(amount, cur) for cur, amount in sorted(bill.totals_minor.items())],
            },
        )


class ProviderBillingView(APIView):
    """``PUT /api/v1/billing/provider``: a therapist sets the NPI their superbills carry."""

    permission_classes = [has_role(Role.THERAPIST)]

    @extend_schema(
        operation_id="billing_provider_set",
        summary="Set the therapist's NPI",
        request=ProviderBillingIn,
        responses={200: ProviderBillingOut, **problem_responses(400, 401, 403)},
        tags=["billing"],
    )
    def put(self, request: Request) -> Response:
        data = ProviderBillingIn(data=request.data)
        data.is_valid(raise_exception=True)
        record = provider_billing_set_npi(
            therapist=user_of(request),
            npi=data.validated_data["npi"],
            request=request,
            now=timezone.now(),
        )
        return Response(ProviderBillingOut(record).data)


class PaymentMethodsView(AuditedMixin, APIView):
    """``GET /api/v1/billing/payment-methods``: the client's saved cards (brand, last four,
    expiry), the default first. Audited."""

    audit_resource = "billing.payment_method"
    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_payment_methods_list",
        summary="List the client's saved cards",
        responses={200: SavedPaymentMethodOut(many=True), **problem_responses(401, 403)},
        tags=["billing"],
    )
    def get(self, request: Request) -> Response:
        methods = list(payment_methods_active(client_id=user_of(request).pk))
        context = {"default_id": methods[0].pk if methods else None}
        return Response(SavedPaymentMethodOut(methods, many=True, context=context).data)


class PaymentMethodSetupView(APIView):
    """``POST /api/v1/billing/payment-methods/setup``: start (or resume) saving a card for
    later fees; returns the SetupIntent's client secret for Stripe's SDK."""

    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_payment_method_setup",
        summary="Start saving a card (a SetupIntent, usage off_session)",
        request=None,
        responses={200: SetupOut, **problem_responses(401, 403, 409, 503)},
        tags=["billing"],
    )
    @idempotent
    def post(self, request: Request) -> Response:
        started = payment_method_setup_start(
            client=user_of(request), request=request, now=timezone.now()
        )
        return Response(SetupOut(started).data)


class PaymentMethodView(AuditedMixin, APIView):
    """``DELETE /api/v1/billing/payment-methods/{id}``: remove one of the client's cards."""

    # The service reports ``billing.payment_method.detach``; a 404 is recorded as denied.
    audit_resource = "billing.payment_method"
    audit_lookup_kwarg = "method_id"
    audit_models = (SavedPaymentMethod,)  # answers 204 with no body: tell the route walk
    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_payment_method_detach",
        summary="Remove a saved card (detached at Stripe)",
        responses={204: None, **problem_responses(401, 403, 404, 503)},
        tags=["billing"],
    )
    def delete(self, request: Request, method_id: uuid.UUID) -> Response:
        payment_method_detach(
            method_id=method_id, client=user_of(request), request=request, now=timezone.now()
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class PaymentMethodDefaultView(AuditedMixin, APIView):
    """``PUT /api/v1/billing/payment-methods/{id}/default``: the client chooses the card
    off-session fees are charged to."""

    # The service reports ``billing.payment_method.default``; a 404 is recorded as denied.
    audit_resource = "billing.payment_method"
    audit_lookup_kwarg = "method_id"
    permission_classes = [has_role(Role.CLIENT)]

    @extend_schema(
        operation_id="billing_payment_method_default",
        summary="Choose the saved card off-session fees are charged to",
        request=None,
        responses={200: SavedPaymentMethodOut, **problem_responses(401, 403, 404)},
        tags=["billing"],
    )
    def put(self, request: Request, method_id: uuid.UUID) -> Response:
        method = payment_method_set_default(
            method_id=method_id, client=user_of(request), request=request
        )
        return Response(SavedPaymentMethodOut(method, context={"default_id": method.pk}).data)
