"""Joining a booking's video room (docs/video.md, "Join").

VID-01: the join is refused (problem+json, audited as ``video.room.join_denied``, nothing else
changed) for an outsider, the booking's client's other therapist (any therapist not on it), an
unknown booking (the same 404 as someone else's), a booking not confirmed, before the window,
after the window, an ended room, a client whose current jurisdiction the therapist is not
licensed in, an in-person booking; staff without a second factor are refused by permission.
VID-08 (minting) and VID-10 (audit fields, no IP or SDP in details) are checked on success.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from api.models import Role
from audit.models import AuditEvent, Outcome
from scheduling.models import Booking, BookingStatus, Delivery, SessionType
from tests.factories import api_client_for
from tests.scheduling.conftest import make_booking, make_therapist
from video import services
from video.models import EndReason, Participant, PresenceState, Room
from video.tokens import room_token_decode

pytestmark = pytest.mark.django_db

STUN = "stun:stun.example.test:3478"
TURN = "turn:turn.example.test:3478?transport=udp"
SECRET = "turn-secret-for-tests-only"


@pytest.fixture(autouse=True)
def _at(fixed_clock: datetime, settings) -> datetime:
    """A fixed instant (tests/clock.py) and known ICE settings."""
    settings.VIDEO_STUN_URLS = [STUN]
    settings.VIDEO_TURN_URLS = [TURN]
    settings.VIDEO_TURN_SECRET = SECRET
    return fixed_clock


@pytest.fixture
def profile(therapist):
    return make_therapist(user=therapist, jurisdiction="US-NY")


def _booking(profile, client_user, fixed_clock, *, minutes=5, status=BookingStatus.CONFIRMED):
    """A 50-minute booking starting ``minutes`` after the clock's instant (inside the window)."""
    hold = fixed_clock + timedelta(minutes=15) if status == BookingStatus.HELD else None
    return make_booking(
        therapist=profile,
        client=client_user,
        start=fixed_clock + timedelta(minutes=minutes),
        status=status,
        hold_expires_at=hold,
        now=fixed_clock - timedelta(days=3),
    )


@pytest.fixture
def booking(profile, client_user, fixed_clock):
    return _booking(profile, client_user, fixed_clock)


def _url(booking_id) -> str:
    return f"/api/v1/video/rooms/{booking_id}/join"


def _join(api, booking_id, body=None, **extra):
    return api.post(_url(booking_id), body if body is not None else {}, format="json", **extra)


def _client_join(api, booking_id, **extra):
    return _join(api, booking_id, {"jurisdiction": "US-NY"}, **extra)


def _z(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _state(booking_id):
    """Everything a join could change, but the audit trail."""
    booking = Booking.objects.filter(pk=booking_id).values().first()
    rooms = list(Room.objects.values())
    participants = list(Participant.objects.values())
    return booking, rooms, participants


def _events():
    return list(AuditEvent.objects.filter(resource_type="scheduling.booking").order_by("id"))


def _assert_refused(response, *, status, code, before, booking_id, actor, patient):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"], body["type"]) == (
        status,
        code,
        f"urn:telehealth:problem:{code}",
    )
    assert "token" not in body and "room" not in body
    assert _state(booking_id) == before
    [event] = _events()
    assert (event.action, event.outcome, event.actor_id) == (
        "video.room.join_denied",
        Outcome.DENIED,
        actor.pk,
    )
    assert (event.resource_type, event.resource_id, event.patient_id) == (
        "scheduling.booking",
        str(booking_id),
        patient,
    )
    assert (event.details["reason"], event.details["status"]) == (code, status)
    return body


# --- Refusals (VID-01) ----------------------------------------------------------------------


def test_vid_01_an_outsider_gets_booking_not_found(booking, outsider, client_user):
    before = _state(booking.pk)
    response = _client_join(api_client_for(outsider, mfa=False), booking.pk)
    _assert_refused(
        response,
        status=404,
        code="booking_not_found",
        before=before,
        booking_id=booking.pk,
        actor=outsider,
        patient=client_user.pk,
    )


def test_vid_01_another_therapist_gets_the_same_404_as_an_unknown_booking(
    booking, other_therapist, client_user
):
    make_therapist(user=other_therapist)
    api = api_client_for(other_therapist)
    before = _state(booking.pk)
    theirs = _join(api, booking.pk)
    _assert_refused(
        theirs,
        status=404,
        code="booking_not_found",
        before=before,
        booking_id=booking.pk,
        actor=other_therapist,
        patient=client_user.pk,
    )
    unknown = _join(api, uuid.uuid4())
    assert unknown.status_code == 404
    drop = {"instance", "request_id"}
    assert {k: v for k, v in unknown.json().items() if k not in drop} == {
        k: v for k, v in theirs.json().items() if k not in drop
    }
    assert _state(booking.pk) == before


def test_vid_01_a_booking_not_confirmed_is_refused(profile, client_user, client_api, fixed_clock):
    held = _booking(profile, client_user, fixed_clock, status=BookingStatus.HELD)
    before = _state(held.pk)
    response = _client_join(client_api, held.pk)
    _assert_refused(
        response,
        status=409,
        code="booking_not_confirmed",
        before=before,
        booking_id=held.pk,
        actor=client_user,
        patient=client_user.pk,
    )


def test_vid_01_before_the_window_the_room_is_not_open(
    profile, client_user, client_api, fixed_clock
):
    later = _booking(profile, client_user, fixed_clock, minutes=60)
    before = _state(later.pk)
    body = _assert_refused(
        _client_join(client_api, later.pk),
        status=409,
        code="room_not_open",
        before=before,
        booking_id=later.pk,
        actor=client_user,
        patient=client_user.pk,
    )
    assert body["opens_at"] == _z(later.start - timedelta(minutes=10))


def test_vid_01_after_the_window_the_room_is_closed(profile, client_user, client_api, fixed_clock):
    # Ended 70 minutes ago: the window (15 minutes of grace) closed 55 minutes ago.
    past = _booking(profile, client_user, fixed_clock, minutes=-120)
    before = _state(past.pk)
    _assert_refused(
        _client_join(client_api, past.pk),
        status=409,
        code="room_closed",
        before=before,
        booking_id=past.pk,
        actor=client_user,
        patient=client_user.pk,
    )


def test_vid_01_an_ended_room_is_closed_inside_the_window(
    booking, therapist, therapist_api, client_user, fixed_clock
):
    Room.objects.create(
        booking=booking,
        mode="video",
        created_at=fixed_clock,
        ended_at=fixed_clock,
        end_reason=EndReason.ENDED_BY_THERAPIST,
    )
    before = _state(booking.pk)
    _assert_refused(
        _join(therapist_api, booking.pk),
        status=409,
        code="room_closed",
        before=before,
        booking_id=booking.pk,
        actor=therapist,
        patient=client_user.pk,
    )


def test_vid_01_a_client_where_the_therapist_is_not_licensed_is_refused(
    booking, client_user, client_api
):
    before = _state(booking.pk)
    response = _join(client_api, booking.pk, {"jurisdiction": "US-CA"})
    _assert_refused(
        response,
        status=403,
        code="not_licensed_in_jurisdiction",
        before=before,
        booking_id=booking.pk,
        actor=client_user,
        patient=client_user.pk,
    )


def test_the_therapist_needs_no_jurisdiction_and_any_given_is_ignored(booking, therapist_api):
    response = _join(therapist_api, booking.pk, {"jurisdiction": "US-CA"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "therapist"


def test_an_in_person_booking_has_no_video(booking, client_user, client_api):
    SessionType.objects.filter(pk=booking.session_type_id).update(delivery=Delivery.IN_PERSON)
    before = _state(booking.pk)
    _assert_refused(
        _client_join(client_api, booking.pk),
        status=409,
        code="no_video",
        before=before,
        booking_id=booking.pk,
        actor=client_user,
        patient=client_user.pk,
    )


def test_staff_without_a_second_factor_are_refused(booking, therapist, client_user):
    before = _state(booking.pk)
    response = _join(api_client_for(therapist, mfa=False), booking.pk)
    _assert_refused(
        response,
        status=403,
        code="mfa_required",
        before=before,
        booking_id=booking.pk,
        actor=therapist,
        patient=client_user.pk,
    )


def test_an_anonymous_caller_is_refused(booking, anon_api):
    before = _state(booking.pk)
    response = _client_join(anon_api, booking.pk)
    assert response.status_code == 401
    assert _state(booking.pk) == before
    [event] = _events()
    assert (event.action, event.outcome, event.actor_id, event.patient_id) == (
        "video.room.join_denied",
        Outcome.DENIED,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({}, "jurisdiction", "required"),
        ({"jurisdiction": "us-ny"}, "jurisdiction", "invalid"),
        ({"jurisdiction": "US-NY", "role": "therapist"}, "role", "unknown_field"),
    ],
)
def test_a_client_body_is_validated(booking, client_api, body, field, code):
    before = _state(booking.pk)
    response = _join(client_api, booking.pk, body)
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [(field, code)]
    assert _state(booking.pk) == before
    assert _events() == []


def test_a_refusal_outside_a_view_is_audited_and_committed(booking, outsider, client_user):
    with pytest.raises(services.BookingNotFound):
        services.room_join(
            booking_id=booking.pk, user=outsider, jurisdiction="US-NY", now=timezone.now()
        )
    [event] = _events()
    assert (event.action, event.outcome, event.actor_id, event.patient_id) == (
        "video.room.join_denied",
        Outcome.DENIED,
        outsider.pk,
        client_user.pk,
    )
    assert event.details == {"reason": "booking_not_found", "status": 404}
    assert Room.objects.count() == 0


# --- Joining --------------------------------------------------------------------------------


def test_the_client_joins_and_gets_exactly_the_documented_answer(booking, client_user, client_api):
    response = _client_join(client_api, booking.pk)
    assert response.status_code == 200, response.content
    body = response.json()
    room = Room.objects.get()
    participant = Participant.objects.get()
    assert set(body) == {
        "room",
        "token",
        "expires_at",
        "ws_url",
        "ice_servers",
        "role",
        "mode",
        "window",
    }
    assert body["room"] == str(room.pk) != str(booking.pk)
    assert body["ws_url"] == f"ws://testserver/ws/video/{room.pk}/"
    assert (body["role"], body["mode"]) == ("client", "video")
    opens_at, closes_at = booking.start - timedelta(minutes=10), booking.end + timedelta(minutes=15)
    assert body["window"] == {"opens_at": _z(opens_at), "closes_at": _z(closes_at)}
    stun, turn = body["ice_servers"]
    assert stun == {"urls": [STUN]}
    assert (set(turn), turn["urls"]) == ({"urls", "username", "credential"}, [TURN])
    assert turn["username"].startswith(f"{int(closes_at.timestamp())}:")
    # The room and the participant as the join left them.
    assert (room.booking_id, room.mode, room.ended_at) == (booking.pk, "video", None)
    assert (participant.room_id, participant.user_id, participant.role, participant.state) == (
        room.pk,
        client_user.pk,
        "client",
        PresenceState.AWAY,
    )
    assert participant.token_jti and participant.left_at is None


def test_the_room_token_decodes_and_never_outlives_the_window(booking, client_user, client_api):
    body = _client_join(client_api, booking.pk).json()
    claims = room_token_decode(body["token"], now=timezone.now())
    participant = Participant.objects.get()
    assert (claims.user_id, claims.room_id, claims.participant_id, claims.role, claims.jti) == (
        client_user.pk,
        participant.room_id,
        participant.pk,
        "client",
        participant.token_jti,
    )
    assert body["expires_at"] == _z(datetime.fromtimestamp(claims.expires_at, UTC))
    closes_at = booking.end + timedelta(minutes=15)
    assert claims.expires_at <= int(closes_at.timestamp())


def test_near_the_windows_end_the_token_expires_with_it(
    profile, client_user, client_api, fixed_clock
):
    # The window closes two minutes from now: less than the token's TTL (five minutes).
    late = _booking(profile, client_user, fixed_clock, minutes=-63)
    closes_at = late.end + timedelta(minutes=15)
    assert closes_at == fixed_clock + timedelta(minutes=2)
    body = _client_join(client_api, late.pk).json()
    claims = room_token_decode(body["token"], now=timezone.now())
    assert claims.expires_at == int(closes_at.timestamp())
    assert body["expires_at"] == _z(closes_at)


def test_the_therapist_joins_without_a_body_and_both_share_one_room(
    booking, therapist, therapist_api, client_api
):
    first = _join(therapist_api, booking.pk)
    second = _client_join(client_api, booking.pk)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["role"] == "therapist"
    assert first.json()["room"] == second.json()["room"] == str(Room.objects.get().pk)
    roles = dict(Participant.objects.values_list("user_id", "role"))
    assert roles[therapist.pk] == "therapist" and len(roles) == 2


def test_a_second_join_replaces_the_token_id_and_keeps_one_room(booking, client_api):
    first = _client_join(client_api, booking.pk).json()
    jti_first = Participant.objects.get().token_jti
    second = _client_join(client_api, booking.pk).json()
    participant = Participant.objects.get()
    assert Room.objects.count() == 1
    assert second["room"] == first["room"]
    assert participant.token_jti != jti_first
    now = timezone.now()
    assert room_token_decode(first["token"], now=now).jti == jti_first
    assert room_token_decode(second["token"], now=now).jti == participant.token_jti


def test_someone_who_left_may_join_again_while_the_window_is_open(booking, client_api, fixed_clock):
    _client_join(client_api, booking.pk)
    Participant.objects.update(state=PresenceState.LEFT, left_at=fixed_clock, token_jti="")
    body = _client_join(client_api, booking.pk).json()
    participant = Participant.objects.get()
    assert (participant.state, participant.left_at) == (PresenceState.AWAY, None)
    assert room_token_decode(body["token"], now=timezone.now()).jti == participant.token_jti


def test_an_audio_booking_opens_an_audio_room(booking, client_api):
    SessionType.objects.filter(pk=booking.session_type_id).update(delivery=Delivery.AUDIO)
    body = _client_join(client_api, booking.pk).json()
    assert body["mode"] == "audio"
    assert Room.objects.get().mode == "audio"


def test_over_https_the_socket_url_is_wss(booking, client_api):
    body = _client_join(client_api, booking.pk, secure=True).json()
    assert body["ws_url"] == f"wss://testserver/ws/video/{body['room']}/"


def test_vid_10_the_join_is_audited_on_the_booking_for_the_client(booking, client_user, client_api):
    body = _client_join(client_api, booking.pk, HTTP_USER_AGENT="tests").json()
    [event] = _events()
    assert (event.action, event.outcome, event.actor_id, event.actor_role) == (
        "video.room.joined",
        Outcome.ALLOWED,
        client_user.pk,
        Role.CLIENT,
    )
    assert (event.resource_type, event.resource_id, event.patient_id) == (
        "scheduling.booking",
        str(booking.pk),
        client_user.pk,
    )
    assert event.details == {"role": "client", "room": body["room"], "mode": "video"}


def test_vid_10_the_therapists_join_names_the_client_as_patient(
    booking, therapist, client_user, therapist_api
):
    _join(therapist_api, booking.pk)
    [event] = _events()
    assert (event.actor_id, event.patient_id, event.details["role"]) == (
        therapist.pk,
        client_user.pk,
        "therapist",
    )


def test_vid_08_the_turn_secret_is_not_in_the_answer(booking, client_api):
    response = _client_join(client_api, booking.pk)
    assert SECRET not in response.content.decode()


def test_a_compliance_officer_with_mfa_gets_not_found(booking, compliance_officer, client_user):
    before = _state(booking.pk)
    response = _join(api_client_for(compliance_officer), booking.pk)
    _assert_refused(
        response,
        status=404,
        code="booking_not_found",
        before=before,
        booking_id=booking.pk,
        actor=compliance_officer,
        patient=client_user.pk,
    )


def test_vid_10_no_ip_address_or_sdp_in_the_join_events_details(booking, client_api):
    _client_join(client_api, booking.pk, REMOTE_ADDR="203.0.113.9")
    [event] = _events()
    text = str(event.details)
    assert "203.0.113.9" not in text and "sdp" not in text.lower()
