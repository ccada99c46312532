"""Thin views: parse with an input serializer, call one service or selector, render."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from api.authentication import user_of
from api.errors import PROBLEM_CONTENT_TYPE, problem_body
from api.idempotency import idempotent
from api.models import Role
from api.permissions import has_role
from audit.mixins import AuditedMixin
from scheduling import selectors, services
from scheduling.filters import TherapistDirectoryFilter
from scheduling.models import (
    AvailabilityOverride,
    CalendarSource,
    ExternalCalendar,
    Licence,
    SessionType,
    TherapistProfile,
)
from scheduling.pagination import SoonestAvailabilityPagination
from scheduling.serializers import (
    AdminLicenceOut,
    CalendarIn,
    CalendarOut,
    DirectoryItemOut,
    FeedTokenCreatedOut,
    FeedTokenOut,
    LicenceIn,
    LicenceOut,
    LicenceUpdateIn,
    OverrideIn,
    OverrideOut,
    OwnProfileOut,
    ProfileFieldsIn,
    RuleOut,
    RulesIn,
    SessionTypeIn,
    SessionTypeOut,
    SettingsIn,
    SettingsOut,
    SlotsOut,
    SlotsQuery,
    slots_payload,
)

IsTherapist = has_role(Role.THERAPIST)
IsAdmin = has_role(Role.ADMIN)
IsClientOrTherapist = has_role(Role.CLIENT, Role.THERAPIST)

_PROBLEMS = {
    400: OpenApiResponse(description="Invalid input (problem+json)"),
    401: OpenApiResponse(description="Not signed in (problem+json)"),
    403: OpenApiResponse(description="Not allowed (problem+json)"),
    404: OpenApiResponse(description="Not found (problem+json)"),
    409: OpenApiResponse(description="Conflict (problem+json)"),
    422: OpenApiResponse(description="Unprocessable (problem+json)"),
}


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: _PROBLEMS[code] for code in codes}


class _Therapist(APIView):
    permission_classes = [IsTherapist]

    def profile(self, request: Request) -> TherapistProfile:
        return selectors.therapist_profile_of(user=user_of(request))


# --- Public: directory, profile, slots -----------------------------------------------------------


@extend_schema(tags=["directory"], responses={200: DirectoryItemOut(many=True), **_errors(400)})
class TherapistDirectoryView(ListAPIView):
    """Therapists with a current licence, soonest availability first (``next_open_slot``
    is precomputed; the slots endpoint is exact)."""

    permission_classes = [AllowAny]
    serializer_class = DirectoryItemOut
    filterset_class = TherapistDirectoryFilter
    pagination_class = SoonestAvailabilityPagination

    def get_queryset(self) -> Any:
        return selectors.directory_queryset(now=timezone.now())


@extend_schema(tags=["directory"], responses={200: DirectoryItemOut, **_errors(404)})
class TherapistPublicView(APIView):
    permission_classes = [AllowAny]

    def get(self, request: Request, therapist_id: uuid.UUID) -> Response:
        therapist = selectors.therapist_public_get(therapist_id=therapist_id, now=timezone.now())
        return Response(DirectoryItemOut(therapist).data)


@extend_schema(
    tags=["directory"],
    parameters=[SlotsQuery],
    responses={200: SlotsOut, **_errors(400, 404)},
)
class TherapistSlotsView(APIView):
    """Bookable starts for a session type in ``[start, end)``, shown in the ``tz`` zone."""

    permission_classes = [AllowAny]

    def get(self, request: Request, therapist_id: uuid.UUID) -> Response:
        query = SlotsQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        now = timezone.now()
        therapist = selectors.therapist_public_get(therapist_id=therapist_id, now=now)
        session_type = selectors.session_type_public_get(
            therapist=therapist, session_type_id=query.validated_data["session_type"]
        )
        starts = selectors.therapist_open_slots(
            therapist=therapist,
            session_type=session_type,
            start=query.validated_data["start"],
            end=query.validated_data["end"],
            now=now,
        )
        payload = slots_payload(
            therapist_id=therapist.pk,
            session_type=session_type,
            starts=starts,
            tz=query.validated_data["tz"],
        )
        return Response(SlotsOut(payload).data)


# --- Therapist self-management -------------------------------------------------------------------


class MyProfileView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: OwnProfileOut, **_errors(403, 404)})
    def get(self, request: Request) -> Response:
        return Response(OwnProfileOut(self.profile(request)).data)

    @extend_schema(
        tags=["therapist"],
        request=ProfileFieldsIn,
        responses={201: OwnProfileOut, **_errors(400, 403, 409)},
    )
    def post(self, request: Request) -> Response:
        data = ProfileFieldsIn(data=request.data)
        data.is_valid(raise_exception=True)
        services.therapist_profile_create(
            user=user_of(request), now=timezone.now(), **data.validated_data
        )
        profile = selectors.therapist_profile_of(user=user_of(request))
        return Response(OwnProfileOut(profile).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        tags=["therapist"],
        request=ProfileFieldsIn(partial=True),
        responses={200: OwnProfileOut, **_errors(400, 403, 404)},
    )
    def patch(self, request: Request) -> Response:
        data = ProfileFieldsIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.therapist_profile_update(
            profile=self.profile(request), fields=dict(data.validated_data), now=timezone.now()
        )
        return Response(OwnProfileOut(self.profile(request)).data)


class MySettingsView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: SettingsOut, **_errors(403, 404)})
    def get(self, request: Request) -> Response:
        return Response(SettingsOut(self.profile(request)).data)

    @extend_schema(
        tags=["therapist"], request=SettingsIn, responses={200: SettingsOut, **_errors(400, 404)}
    )
    def patch(self, request: Request) -> Response:
        data = SettingsIn(data=request.data)
        data.is_valid(raise_exception=True)
        profile = services.therapist_profile_update(
            profile=self.profile(request), fields=dict(data.validated_data), now=timezone.now()
        )
        return Response(SettingsOut(profile).data)


class MySessionTypesView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: SessionTypeOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.own_session_types(therapist=self.profile(request))
        return Response(SessionTypeOut(rows, many=True).data)

    @extend_schema(
        tags=["therapist"],
        request=SessionTypeIn,
        responses={201: SessionTypeOut, **_errors(400, 404, 409)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = SessionTypeIn(data=request.data)
        data.is_valid(raise_exception=True)
        session_type = services.session_type_create(
            profile=self.profile(request), now=timezone.now(), **data.validated_data
        )
        return Response(SessionTypeOut(session_type).data, status=status.HTTP_201_CREATED)


class MySessionTypeView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: SessionTypeOut, **_errors(404)})
    def get(self, request: Request, pk: uuid.UUID) -> Response:
        return Response(
            SessionTypeOut(
                selectors.own_row(SessionType, therapist=self.profile(request), pk=pk)
            ).data
        )

    @extend_schema(
        tags=["therapist"],
        request=SessionTypeIn(partial=True),
        responses={200: SessionTypeOut, **_errors(400, 404, 409)},
    )
    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        session_type = selectors.own_row(SessionType, therapist=self.profile(request), pk=pk)
        data = SessionTypeIn(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        session_type = services.session_type_update(
            session_type=session_type, fields=dict(data.validated_data), now=timezone.now()
        )
        return Response(SessionTypeOut(session_type).data)

    @extend_schema(tags=["therapist"], responses={204: None, **_errors(404)})
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        services.session_type_archive(
            session_type=selectors.own_row(SessionType, therapist=self.profile(request), pk=pk),
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyRulesView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: RuleOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.own_rules(therapist=self.profile(request))
        return Response(RuleOut(rows, many=True).data)

    @extend_schema(
        tags=["therapist"],
        request=RulesIn,
        responses={200: RuleOut(many=True), **_errors(400, 404)},
    )
    def put(self, request: Request) -> Response:
        data = RulesIn(data=request.data)
        data.is_valid(raise_exception=True)
        rules = services.availability_rules_replace(
            profile=self.profile(request),
            windows=[
                services.WeeklyWindowInput(w["weekday"], w["start"], w["end"])
                for w in data.validated_data["windows"]
            ],
            now=timezone.now(),
        )
        return Response(RuleOut(rules, many=True).data)


class MyOverridesView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: OverrideOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.own_overrides(therapist=self.profile(request))
        return Response(OverrideOut(rows, many=True).data)

    @extend_schema(
        tags=["therapist"], request=OverrideIn, responses={201: OverrideOut, **_errors(400, 404)}
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = OverrideIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        override = services.availability_override_create(
            profile=self.profile(request),
            kind=v["kind"],
            first_date=v["first_date"],
            last_date=v["last_date"],
            start_minute=v.get("start"),
            end_minute=v.get("end"),
            now=timezone.now(),
        )
        return Response(OverrideOut(override).data, status=status.HTTP_201_CREATED)


class MyOverrideView(_Therapist):
    @extend_schema(tags=["therapist"], responses={204: None, **_errors(404)})
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        services.availability_override_delete(
            override=selectors.own_row(
                AvailabilityOverride, therapist=self.profile(request), pk=pk
            ),
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyLicencesView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: LicenceOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.own_licences(therapist=self.profile(request))
        return Response(LicenceOut(rows, many=True).data)

    @extend_schema(
        tags=["therapist"],
        request=LicenceIn,
        responses={201: LicenceOut, **_errors(400, 404, 409)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = LicenceIn(data=request.data)
        data.is_valid(raise_exception=True)
        licence = services.licence_create(
            profile=self.profile(request),
            actor=user_of(request),
            request=request,
            now=timezone.now(),
            **data.validated_data,
        )
        return Response(LicenceOut(licence).data, status=status.HTTP_201_CREATED)


class MyLicenceView(_Therapist):
    @extend_schema(
        tags=["therapist"],
        request=LicenceUpdateIn,
        description="409 licence_exists: the change would list the same licence twice.",
        responses={200: LicenceOut, **_errors(400, 404, 409)},
    )
    def patch(self, request: Request, pk: uuid.UUID) -> Response:
        licence = selectors.own_row(Licence, therapist=self.profile(request), pk=pk)
        data = LicenceUpdateIn(data=request.data)
        data.is_valid(raise_exception=True)
        licence = services.licence_update(
            licence=licence,
            fields=dict(data.validated_data),
            actor=user_of(request),
            request=request,
            now=timezone.now(),
        )
        return Response(LicenceOut(licence).data)

    @extend_schema(tags=["therapist"], responses={204: None, **_errors(404)})
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        services.licence_delete(
            licence=selectors.own_row(Licence, therapist=self.profile(request), pk=pk),
            actor=user_of(request),
            request=request,
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyCalendarsView(_Therapist):
    @extend_schema(tags=["therapist"], responses={200: CalendarOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.own_calendars(therapist=self.profile(request))
        return Response(CalendarOut(rows, many=True).data)

    @extend_schema(
        tags=["therapist"],
        request=CalendarIn,
        responses={201: CalendarOut, **_errors(400, 404, 422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = CalendarIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        if v["source"] == CalendarSource.UPLOAD:
            calendar = services.external_calendar_upload(
                profile=self.profile(request),
                name=v["name"],
                content=v["ics"].encode("utf-8"),
                now=timezone.now(),
            )
        else:
            calendar = services.external_calendar_subscribe(
                profile=self.profile(request), name=v["name"], url=v["url"], now=timezone.now()
            )
        return Response(CalendarOut(calendar).data, status=status.HTTP_201_CREATED)


class MyCalendarView(_Therapist):
    @extend_schema(tags=["therapist"], responses={204: None, **_errors(404)})
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        services.external_calendar_delete(
            calendar=selectors.own_row(ExternalCalendar, therapist=self.profile(request), pk=pk),
            now=timezone.now(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Admin ---------------------------------------------------------------------------------------


@extend_schema(
    tags=["admin"],
    parameters=[OpenApiParameter("verified", OpenApiTypes.BOOL, required=False)],
    responses={200: AdminLicenceOut(many=True)},
)
class AdminLicencesView(ListAPIView):
    """Licences for review, oldest first (``?verified=false`` for the queue)."""

    permission_classes = [IsAdmin]
    serializer_class = AdminLicenceOut

    def get_queryset(self) -> Any:
        verified = self.request.query_params.get("verified")
        return selectors.licences_for_review(
            verified={"true": True, "false": False}.get(verified or "")
        )


@extend_schema(
    tags=["admin"], request=None, responses={200: AdminLicenceOut, **_errors(403, 404, 409)}
)
class AdminLicenceVerifyView(APIView):
    permission_classes = [IsAdmin]

    def post(self, request: Request, pk: uuid.UUID) -> Response:
        licence = services.licence_verify(
            licence_id=pk, admin=user_of(request), request=request, now=timezone.now()
        )
        return Response(AdminLicenceOut(licence).data)


# --- Calendar feeds ------------------------------------------------------------------------------

ICS_CONTENT_TYPE = "text/calendar; charset=utf-8"


def _ics(body: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=ICS_CONTENT_TYPE)
    response["Content-Disposition"] = f'inline; filename="{filename}"'
    return response


class FeedTokensView(APIView):
    permission_classes = [IsClientOrTherapist]

    @extend_schema(tags=["calendars"], responses={200: FeedTokenOut(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.feed_tokens_of(owner=user_of(request))
        return Response(FeedTokenOut(rows, many=True).data)

    @extend_schema(
        tags=["calendars"], request=None, responses={201: FeedTokenCreatedOut, **_errors(403)}
    )
    def post(self, request: Request) -> Response:
        issued = services.calendar_feed_token_create(
            owner=user_of(request), request=request, now=timezone.now()
        )
        url = request.build_absolute_uri(f"/api/v1/calendars/{issued.secret}.ics")
        body = {"id": issued.token.pk, "created_at": issued.token.created_at, "url": url}
        return Response(FeedTokenCreatedOut(body).data, status=status.HTTP_201_CREATED)


class FeedTokenView(APIView):
    permission_classes = [IsClientOrTherapist]

    @extend_schema(tags=["calendars"], responses={204: None, **_errors(404)})
    def delete(self, request: Request, pk: uuid.UUID) -> Response:
        services.calendar_feed_token_revoke(
            owner=user_of(request), token_id=pk, request=request, now=timezone.now()
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(
    tags=["calendars"],
    auth=[],
    responses={(200, "text/calendar"): OpenApiTypes.STR, **_errors(404)},
)
class CalendarFeedView(APIView):
    """The ICS feed a calendar app subscribes to; the secret in the path is the credential.

    Not an ``AuditedMixin`` view: the request is anonymous and the actor is the token's owner,
    so the service records the access itself (same shape: one event per client).
    """

    permission_classes = [AllowAny]
    authentication_classes: list[type] = []

    def get(self, request: Request, token: str) -> HttpResponse:
        body = services.calendar_feed_read(presented=token, request=request, now=timezone.now())
        if body is None:
            # Not raised: the problem's "instance" would echo the path, which holds the secret.
            problem = problem_body(status_code=404, code="not_found", detail="No such calendar.")
            problem["request_id"] = getattr(request, "request_id", "")
            return Response(problem, status=404, content_type=PROBLEM_CONTENT_TYPE)
        return _ics(body, "sessions.ics")


@extend_schema(
    tags=["calendars"], responses={(200, "text/calendar"): OpenApiTypes.STR, **_errors(404)}
)
class BookingIcsView(AuditedMixin, APIView):
    """One booking as ``.ics``, for its client or its therapist (audited read or denial)."""

    audit_resource = "scheduling.booking"
    audit_lookup_kwarg = "booking_id"
    permission_classes = [IsClientOrTherapist]

    def get(self, request: Request, booking_id: uuid.UUID) -> HttpResponse:
        body = services.booking_ics_read(
            booking_id=booking_id, user=user_of(request), now=timezone.now()
        )
        return _ics(body, "session.ics")
