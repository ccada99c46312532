"""Booking endpoints: thin views over ``services`` and ``selectors``.

Each view serving bookings is an ``AuditedMixin`` view: the request runs in one transaction,
what it served or changed is audited in it, and a 401/403/404 is audited as denied. Clients
and therapists see only their own bookings (anything else is a 404); compliance officers and
admins are refused by role (403): they review access through the audit trail instead.
"""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.idempotency import idempotent
from api.models import Role
from api.pagination import CursorPagination
from api.permissions import has_role
from api.serializers import problem_responses, represent
from scheduling import selectors as scheduling_selectors
from scheduling.bookings import selectors, services
from scheduling.bookings.audit import ServiceReportedAuditMixin
from scheduling.bookings.serializers import (
    BookingDetailOut,
    BookingIn,
    BookingOut,
    CancelIn,
    CancellationPolicyIn,
    CancellationPolicyOut,
    RescheduleIn,
    ScheduleQuery,
    SeriesIn,
    SeriesOut,
)
from scheduling.models import Booking

IsClient = has_role(Role.CLIENT)
IsTherapist = has_role(Role.THERAPIST)
IsParticipantRole = has_role(Role.CLIENT, Role.THERAPIST)
TAGS = ["bookings"]


class AuditedBookingView(ServiceReportedAuditMixin):
    """Serves ``scheduling.booking``; the booking id is the ``booking_id`` URL keyword."""

    audit_resource = "scheduling.booking"
    audit_lookup_kwarg = "booking_id"


class BookingPagination(CursorPagination):
    ordering = ("-start", "-id")


class BookingsView(AuditedBookingView, ListAPIView):
    """A client's bookings, or a therapist's (newest first); a client books here."""

    serializer_class = BookingOut
    pagination_class = BookingPagination

    def get_permissions(self) -> list[Any]:
        return [IsClient()] if self.request.method == "POST" else [IsParticipantRole()]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no user
            return Booking.objects.none()
        return selectors.bookings_of(user=user_of(self.request), now=timezone.now())

    @extend_schema(tags=TAGS, responses={200: BookingOut(many=True), **problem_responses(403)})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        request=BookingIn,
        responses={201: BookingOut, **problem_responses(400, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = BookingIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        booking = services.booking_create(
            client=user_of(request),
            therapist_id=v["therapist"],
            session_type_id=v["session_type"],
            start=v["start"],
            jurisdiction=v["jurisdiction"],
            request=request,
            now=timezone.now(),
        )
        return Response(represent(BookingOut, booking), status=status.HTTP_201_CREATED)


class BookingSeriesView(AuditedBookingView, APIView):
    permission_classes = [IsClient]

    @extend_schema(
        tags=TAGS,
        request=SeriesIn,
        responses={
            200: SeriesOut,
            201: SeriesOut,
            **problem_responses(400, 403, 404, 409, 422),
        },
        description="Book a weekly or fortnightly series (dry_run: report only). Each "
        "occurrence is checked like a single booking; collisions are listed with a code.",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = SeriesIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        outcome = services.booking_series_create(
            client=user_of(request),
            therapist_id=v["therapist"],
            session_type_id=v["session_type"],
            first_start=v["first_start"],
            frequency=v["frequency"],
            count=v["count"],
            jurisdiction=v["jurisdiction"],
            on_conflict=v["on_conflict"],
            dry_run=v["dry_run"],
            request=request,
            now=timezone.now(),
        )
        code = status.HTTP_200_OK if v["dry_run"] else status.HTTP_201_CREATED
        return Response(SeriesOut(outcome).data, status=code)


class BookingDetailView(AuditedBookingView, APIView):
    permission_classes = [IsParticipantRole]

    @extend_schema(tags=TAGS, responses={200: BookingDetailOut, **problem_responses(403, 404)})
    def get(self, request: Request, booking_id: uuid.UUID) -> Response:
        booking = selectors.booking_for_participant(booking_id=booking_id, user=user_of(request))
        return Response(represent(BookingDetailOut, booking))


class BookingCancelView(AuditedBookingView, APIView):
    audit_verb = "cancel"
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        request=CancelIn,
        responses={200: BookingOut, **problem_responses(400, 403, 404, 409)},
        description="Cancel (client or therapist). The response's fee_request says what "
        "billing was asked to do.",
    )
    @idempotent
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        data = CancelIn(data=request.data)
        data.is_valid(raise_exception=True)
        booking = services.booking_cancel(
            booking_id=booking_id,
            by=user_of(request),
            reason=data.validated_data["reason"],
            request=request,
            now=timezone.now(),
        )
        return Response(represent(BookingOut, booking))


class BookingRescheduleView(AuditedBookingView, APIView):
    audit_verb = "reschedule"
    permission_classes = [IsParticipantRole]

    @extend_schema(
        tags=TAGS,
        request=RescheduleIn,
        responses={200: BookingOut, **problem_responses(400, 403, 404, 409, 422)},
    )
    @idempotent
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        data = RescheduleIn(data=request.data)
        data.is_valid(raise_exception=True)
        booking = services.booking_reschedule(
            booking_id=booking_id,
            by=user_of(request),
            start=data.validated_data["start"],
            request=request,
            now=timezone.now(),
        )
        return Response(represent(BookingOut, booking))


_THERAPIST_ACTION = extend_schema(
    tags=TAGS, request=None, responses={200: BookingOut, **problem_responses(403, 404, 409)}
)


class BookingConfirmView(AuditedBookingView, APIView):
    """The therapist confirms a held booking that was paid outside the platform."""

    audit_verb = "confirm"
    permission_classes = [IsTherapist]

    @_THERAPIST_ACTION
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        booking = services.booking_confirm(
            booking_id=booking_id,
            actor=user_of(request),
            reason="paid_outside",
            request=request,
            now=timezone.now(),
        )
        return Response(represent(BookingOut, booking))


class BookingCompleteView(AuditedBookingView, APIView):
    audit_verb = "complete"
    permission_classes = [IsTherapist]

    @_THERAPIST_ACTION
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        booking = services.booking_complete(
            booking_id=booking_id, by=user_of(request), request=request, now=timezone.now()
        )
        return Response(represent(BookingOut, booking))


class BookingNoShowView(AuditedBookingView, APIView):
    audit_verb = "no_show"
    permission_classes = [IsTherapist]

    @_THERAPIST_ACTION
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        booking = services.booking_mark_no_show(
            booking_id=booking_id, by=user_of(request), request=request, now=timezone.now()
        )
        return Response(represent(BookingOut, booking))


class BookingTherapistNoShowView(AuditedBookingView, APIView):
    """The therapist records that they did not come (after the start): the booking is
    cancelled and the client refunded in full, no fee."""

    audit_verb = "therapist_no_show"
    permission_classes = [IsTherapist]

    @_THERAPIST_ACTION
    def post(self, request: Request, booking_id: uuid.UUID) -> Response:
        booking = services.booking_therapist_no_show(
            booking_id=booking_id, by=user_of(request), request=request, now=timezone.now()
        )
        return Response(represent(BookingOut, booking))


class MyScheduleView(AuditedBookingView, APIView):
    """The therapist's sessions for a local day, a week (Monday first) or a range, with client
    names; expired holds never show, cancelled sessions on request."""

    permission_classes = [IsTherapist]

    @extend_schema(
        tags=TAGS,
        parameters=[ScheduleQuery],
        responses={200: BookingOut(many=True), **problem_responses(400, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        query = ScheduleQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        v = query.validated_data
        therapist = scheduling_selectors.therapist_profile_of(user=user_of(request))
        if v["period"] == "range":
            start, end = v["start"], v["end"]
        else:
            zone = ZoneInfo(v.get("tz") or therapist.time_zone)
            day = v["date"]
            if v["period"] == "week":
                day = day.fromordinal(day.toordinal() - day.weekday())
            start, end = selectors.day_range(
                day=day, zone=zone, days=7 if v["period"] == "week" else 1
            )
        rows = selectors.therapist_schedule(
            therapist=therapist,
            start=start,
            end=end,
            now=timezone.now(),
            include_cancelled=v["include_cancelled"],
        )
        return Response(BookingOut(rows, many=True).data)


class MyCancellationPolicyView(APIView):
    permission_classes = [IsTherapist]

    @extend_schema(tags=["therapist"], responses={200: CancellationPolicyOut})
    def get(self, request: Request) -> Response:
        therapist = scheduling_selectors.therapist_profile_of(user=user_of(request))
        return Response(CancellationPolicyOut(services.policy_of(therapist=therapist)).data)

    @extend_schema(
        tags=["therapist"],
        request=CancellationPolicyIn,
        responses={200: CancellationPolicyOut, **problem_responses(400, 403, 404, 422)},
    )
    def put(self, request: Request) -> Response:
        data = CancellationPolicyIn(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.cancellation_policy_set(
            therapist=scheduling_selectors.therapist_profile_of(user=user_of(request)),
            now=timezone.now(),
            **data.validated_data,
        )
        return Response(CancellationPolicyOut(policy).data)
