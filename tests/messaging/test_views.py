"""The conversation API: who may reach a conversation (MSG-01), bodies at rest (MSG-02), text
kept as text (MSG-06), dedupe and Idempotency-Key (MSG-04), edits, deletions, receipts and
closing, each access audited with the client as the patient (MSG-05)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.db import connection

from api.models import Role
from audit.models import AuditEvent, Outcome
from messaging.models import Conversation, Message, MessageVersion
from tests.factories import api_client_for, make_user

pytestmark = pytest.mark.django_db

SECRET = "I relapsed last night and I'm scared to tell anyone."


def _url(conversation, suffix=""):
    return f"/api/v1/conversations/{conversation.pk}{suffix}"


def _send(api, conversation, body=SECRET, cid=None, **headers):
    return api.post(
        _url(conversation, "/messages"),
        {"client_message_id": str(cid or uuid.uuid4()), "body": body},
        format="json",
        headers=headers,
    )


def _events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


# --- Opening (MSG-01) --------------------------------------------------------------------------


def test_either_participant_opens_the_one_conversation_of_their_booking(
    booking, client_api, therapist_api, client_user, therapist
):
    opened = client_api.post("/api/v1/conversations/", {"booking": str(booking.pk)}, format="json")
    assert opened.status_code == 201, opened.content
    body = opened.json()
    assert (body["client"], body["therapist"], body["unread"]) == (
        str(client_user.pk),
        str(therapist.pk),
        0,
    )
    again = therapist_api.post(
        "/api/v1/conversations/", {"booking": str(booking.pk)}, format="json"
    )
    assert (again.status_code, again.json()["id"]) == (200, body["id"])
    assert Conversation.objects.count() == 1
    created = _events(resource_type="messaging.conversation", action="create")
    assert [(e.actor_id, e.patient_id) for e in created] == [(client_user.pk, client_user.pk)]


@pytest.mark.parametrize("status", ["held", "cancelled"])
def test_msg_01_a_booking_that_never_became_a_session_opens_nothing(
    profile, client_user, client_api, fixed_clock, status
):
    from datetime import timedelta

    from tests.scheduling.conftest import make_booking

    booking = make_booking(
        therapist=profile,
        client=client_user,
        start=fixed_clock + timedelta(days=3),
        status=status,
        hold_expires_at=fixed_clock + timedelta(minutes=10) if status == "held" else None,
    )
    answer = client_api.post("/api/v1/conversations/", {"booking": str(booking.pk)}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert Conversation.objects.count() == 0


def test_msg_01_someone_elses_booking_is_the_same_404(booking, other_therapist):
    outsider = make_user(role=Role.CLIENT)
    for user in (outsider, other_therapist):
        answer = api_client_for(user).post(
            "/api/v1/conversations/", {"booking": str(booking.pk)}, format="json"
        )
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
    assert Conversation.objects.count() == 0


def test_msg_01_third_parties_and_staff_never_read_a_conversation(
    conversation, client_api, client_user, other_therapist, compliance_officer, admin_user
):
    assert _send(client_api, conversation).status_code == 201
    outsider = make_user(role=Role.CLIENT)
    attempts = {
        outsider: 404,
        other_therapist: 404,
        compliance_officer: 403,
        admin_user: 403,
    }
    for user, expected in attempts.items():
        api = api_client_for(user)
        for answer in (
            api.get(_url(conversation)),
            api.get(_url(conversation, "/messages")),
            _send(api, conversation, "hello"),
        ):
            assert answer.status_code == expected, (user.role, answer.content)
            assert SECRET not in answer.content.decode()
        listed = api.get("/api/v1/conversations/")
        assert listed.status_code == 200 if expected == 404 else 403
        if expected == 404:
            assert listed.json()["results"] == []
    assert Message.objects.count() == 1
    denied = _events(
        resource_type="messaging.conversation",
        resource_id=str(conversation.pk),
        outcome=Outcome.DENIED,
    )
    assert len(denied) == 3 * len(attempts)
    assert {e.patient_id for e in denied} == {client_user.pk}  # named, though refused
    assert {e.actor_id for e in denied} == {u.pk for u in attempts}


# --- Sending, reading, auditing ----------------------------------------------------------------


def test_msg_05_a_message_goes_both_ways_and_every_read_is_one_audited_event(
    conversation, client_api, therapist_api, client_user, therapist
):
    sent = _send(client_api, conversation)
    assert sent.status_code == 201, sent.content
    message = sent.json()
    assert (message["seq"], message["sender"], message["body"], message["kind"]) == (
        1,
        str(client_user.pk),
        SECRET,
        "text",
    )
    inbox = therapist_api.get("/api/v1/conversations/").json()["results"]
    assert [(c["id"], c["unread"], c["last_seq"]) for c in inbox] == [(str(conversation.pk), 1, 1)]
    before = AuditEvent.objects.count()
    page = therapist_api.get(_url(conversation, "/messages"))
    assert page.status_code == 200
    assert [m["body"] for m in page.json()["results"]] == [SECRET]
    reads = list(AuditEvent.objects.filter(id__gt=0).order_by("id"))[before:]
    assert [(e.action, e.resource_type, e.actor_id, e.patient_id) for e in reads] == [
        ("read", "messaging.conversation", therapist.pk, client_user.pk)
    ]
    assert reads[0].details["messages"] == 1
    assert SECRET not in str(reads[0].details)

    reply = _send(therapist_api, conversation, "Thank you for telling me. Can we talk Tuesday?")
    assert reply.json()["seq"] == 2
    receipt = client_api.post(_url(conversation, "/read"), {"seq": 2}, format="json")
    assert (receipt.status_code, receipt.json()["client_read_seq"], receipt.json()["unread"]) == (
        200,
        2,
        0,
    )
    assert therapist_api.get(_url(conversation)).json()["unread"] == 0  # they wrote the last
    _send(client_api, conversation, "Tuesday works.")
    assert therapist_api.get(_url(conversation)).json()["unread"] == 1
    back = client_api.post(_url(conversation, "/read"), {"seq": 1}, format="json")
    assert back.json()["client_read_seq"] == 3  # receipts never move back


def test_history_pages_newest_first_and_catches_up_oldest_first(conversation, client_api):
    for i in range(5):
        _send(client_api, conversation, f"message {i}")
    first = client_api.get(_url(conversation, "/messages?page_size=2")).json()
    assert [m["seq"] for m in first["results"]] == [5, 4]
    second = client_api.get(first["next"]).json()
    assert [m["seq"] for m in second["results"]] == [3, 2]
    catch_up = client_api.get(_url(conversation, "/messages?after_seq=3")).json()
    assert [m["seq"] for m in catch_up["results"]] == [4, 5]
    bad = client_api.get(_url(conversation, "/messages?after_seq=-1"))
    assert (bad.status_code, bad.json()["code"]) == (400, "validation_error")


def test_msg_02_bodies_are_encrypted_at_rest_with_their_key_id(conversation, client_api):
    message_id = _send(client_api, conversation).json()["id"]
    client_api.patch(
        _url(conversation, f"/messages/{message_id}"), {"body": "Edited: " + SECRET}, format="json"
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT body_encrypted, key_id FROM messaging_message")
        rows = cursor.fetchall()
        cursor.execute("SELECT body_encrypted, key_id FROM messaging_messageversion")
        rows += cursor.fetchall()
    assert len(rows) == 2
    for sealed, key_id in rows:
        assert key_id == "dev-1" and sealed.startswith("v1:dev-1:")
        assert "relapsed" not in sealed and "scared" not in sealed
    # Bound to its row: a body copied onto another message does not decrypt.
    other = _send(client_api, conversation, "other").json()["id"]
    Message.objects.filter(pk=other).update(body_encrypted=rows[0][0])
    broken = client_api.get(_url(conversation, "/messages"))
    assert (broken.status_code, broken.json()["code"]) == (500, "decryption_failed")


# --- Dedupe and Idempotency-Key (MSG-04) -------------------------------------------------------


def test_msg_04_a_resent_message_is_stored_once(conversation, client_api):
    cid = uuid.uuid4()
    first = _send(client_api, conversation, cid=cid)
    again = _send(client_api, conversation, cid=cid)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other_text = _send(client_api, conversation, "something else", cid=cid)
    assert (other_text.status_code, other_text.json()["code"]) == (422, "client_message_id_reused")
    assert Message.objects.count() == 1


def test_msg_04_idempotency_key_replays_the_stored_answer(conversation, client_api):
    cid = uuid.uuid4()
    first = _send(client_api, conversation, cid=cid, **{"Idempotency-Key": "send-1"})
    replay = _send(client_api, conversation, cid=cid, **{"Idempotency-Key": "send-1"})
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json() == first.json()
    reused = _send(client_api, conversation, "different", **{"Idempotency-Key": "send-1"})
    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert Message.objects.count() == 1


# --- Text stays text (MSG-06) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script><b>bold</b> &amp;",
        "\u202eevil.exe\u202c and \u2067isolate\u2069",
        "  leading and trailing spaces  \n\ttabs",
        "emoji 🫶🏽 and 中文 and עברית",
    ],
)
def test_msg_06_text_is_stored_and_returned_exactly(conversation, client_api, therapist_api, body):
    sent = _send(client_api, conversation, body)
    assert sent.status_code == 201 and sent.json()["body"] == body
    assert sent["Content-Type"].startswith("application/json")
    listed = therapist_api.get(_url(conversation, "/messages")).json()["results"]
    assert listed[0]["body"] == body


def test_msg_06_bad_text_is_a_clear_4xx_and_nothing_is_stored(conversation, client_api, settings):
    url = _url(conversation, "/messages")
    cid = str(uuid.uuid4())
    too_long = _send(client_api, conversation, "x" * (settings.MESSAGING_MAX_MESSAGE_CHARS + 1))
    assert (too_long.status_code, too_long.json()["code"]) == (400, "validation_error")
    megabyte = client_api.post(
        url,
        data=json.dumps({"client_message_id": cid, "body": "x" * (1024 * 1024)}),
        content_type="application/json",
    )
    assert megabyte.status_code == 413 and megabyte["Content-Type"] == "application/problem+json"
    for raw in (
        json.dumps({"client_message_id": cid, "body": "nul \x00 byte"}),
        json.dumps({"client_message_id": cid, "body": "lone \ud800 surrogate"}),
    ):
        answer = client_api.post(url, data=raw, content_type="application/json")
        assert answer.status_code == 400, answer.content
    invalid_utf8 = client_api.post(
        url,
        data=b'{"client_message_id": "' + cid.encode() + b'", "body": "\xff\xfe"}',
        content_type="application/json",
    )
    assert invalid_utf8.status_code == 400
    empty = _send(client_api, conversation, "")
    assert empty.status_code == 400
    unknown = client_api.post(
        url, {"client_message_id": cid, "body": "hi", "html": True}, format="json"
    )
    assert unknown.status_code == 400
    assert Message.objects.count() == 0


# --- Edits, deletions, closing -----------------------------------------------------------------


def test_an_edit_keeps_the_earlier_text_for_both_participants(
    conversation, client_api, therapist_api
):
    message_id = _send(client_api, conversation).json()["id"]
    url = _url(conversation, f"/messages/{message_id}")
    edited = client_api.patch(url, {"body": "Actually I'm OK."}, format="json")
    assert (edited.status_code, edited.json()["version"], edited.json()["edited"]) == (
        200,
        2,
        True,
    )
    versions = therapist_api.get(url + "/versions").json()
    assert [(v["version"], v["body"]) for v in versions] == [(1, SECRET)]
    not_mine = therapist_api.patch(url, {"body": "rewritten"}, format="json")
    assert (not_mine.status_code, not_mine.json()["code"]) == (403, "not_sender")
    assert MessageVersion.objects.count() == 1


def test_a_deleted_message_leaves_the_other_view_and_keeps_its_record(
    conversation, client_api, therapist_api, client_user
):
    message_id = _send(client_api, conversation).json()["id"]
    deleted = client_api.delete(_url(conversation, f"/messages/{message_id}"))
    assert (deleted.status_code, deleted.json()["deleted"], deleted.json()["body"]) == (
        200,
        True,
        None,
    )
    assert therapist_api.get(_url(conversation, "/messages")).json()["results"] == []
    assert therapist_api.get(_url(conversation)).json()["unread"] == 0
    mine = client_api.get(_url(conversation, "/messages")).json()["results"]
    assert [(m["id"], m["deleted"], m["body"]) for m in mine] == [(message_id, True, None)]
    assert therapist_api.get(_url(conversation, f"/messages/{message_id}/versions")).json() == []
    again = client_api.delete(_url(conversation, f"/messages/{message_id}"))
    assert again.status_code == 409
    row = Message.objects.get(pk=message_id)
    assert row.deleted_at is not None and row.body_encrypted.startswith("v1:")
    trail = _events(resource_type="messaging.message", resource_id=message_id)
    assert [(e.action, e.patient_id) for e in trail] == [
        ("create", client_user.pk),
        ("delete", client_user.pk),
    ]


def test_the_therapist_closes_and_the_client_is_told_where_to_go(
    conversation, client_api, therapist_api
):
    note = "I'm leaving the practice. Dr Lee at Northside Clinic will see you; call 555-0100."
    assert (
        client_api.post(_url(conversation, "/close"), {"note": note}, format="json").status_code
        == 403
    )
    closed = therapist_api.post(_url(conversation, "/close"), {"note": note}, format="json")
    assert (closed.status_code, closed.json()["closed"]) == (200, True)
    last = client_api.get(_url(conversation, "/messages")).json()["results"][0]
    assert (last["kind"], last["body"]) == ("closure", note)
    refused = _send(client_api, conversation, "but wait")
    assert (refused.status_code, refused.json()["code"]) == (409, "conversation_closed")
    twice = therapist_api.post(_url(conversation, "/close"), {"note": note}, format="json")
    assert twice.status_code == 409
    assert Message.objects.count() == 1


# --- Expectations: notice, office hours, automatic reply --------------------------------------


def test_a_conversation_opens_with_the_crisis_line_of_the_clients_jurisdiction(
    booking, client_api, settings
):
    type(booking).objects.filter(pk=booking.pk).update(client_jurisdiction="US-NY")
    opened = client_api.post("/api/v1/conversations/", {"booking": str(booking.pk)}, format="json")
    notice = opened.json()["notice"]
    assert "emergency" in notice and settings.MESSAGING_CRISIS_LINES["US"] in notice
    assert opened.json()["expectations"] == {
        "response_time_hours": None,
        "office_hours": [],
        "time_zone": "UTC",
    }


def test_outside_office_hours_the_therapist_s_automatic_reply_follows_once(
    conversation, client_api, therapist_api
):
    # The fixed clock is Tuesday 14:20 UTC: office hours in Tokyo (23:20 there) are closed.
    settings_in = {
        "time_zone": "Asia/Tokyo",
        "response_time_hours": 24,
        "office_hours": [{"weekday": 1, "start": "09:00", "end": "17:00"}],
        "auto_reply": "Thanks for your message. I reply within one working day.",
        "quiet_start": None,
        "quiet_end": None,
    }
    saved = therapist_api.put("/api/v1/messaging/profile", settings_in, format="json")
    assert saved.status_code == 200, saved.content
    assert saved.json()["office_hours"] == settings_in["office_hours"]
    for text in ("one", "two"):
        _send(client_api, conversation, text)
    history = client_api.get(_url(conversation, "/messages")).json()["results"]
    assert [(m["kind"], m["body"]) for m in reversed(history)] == [
        ("text", "one"),
        ("auto_reply", settings_in["auto_reply"]),
        ("text", "two"),
    ]
    expectations = client_api.get(_url(conversation)).json()["expectations"]
    assert expectations["response_time_hours"] == 24
    assert expectations["time_zone"] == "Asia/Tokyo"


def test_only_therapists_set_expectations_and_bad_settings_are_400(client_api, therapist_api):
    refused = client_api.put(
        "/api/v1/messaging/profile",
        {"time_zone": "UTC", "auto_reply": "I am a client"},
        format="json",
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "not_therapist")
    quiet = client_api.put(
        "/api/v1/messaging/profile",
        {"time_zone": "Europe/Paris", "quiet_start": "22:00", "quiet_end": "07:00"},
        format="json",
    )
    assert quiet.status_code == 200 and quiet.json()["quiet_start"] == "22:00:00"
    for bad in (
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "UTC", "quiet_start": "22:00"},
        {"time_zone": "UTC", "office_hours": [{"weekday": 7, "start": "09:00", "end": "17:00"}]},
        {"time_zone": "UTC", "office_hours": [{"weekday": 1, "start": "17:00", "end": "09:00"}]},
        {"time_zone": "UTC", "office_hours": [{"weekday": 1, "start": "9", "end": "17:00"}]},
    ):
        answer = therapist_api.put("/api/v1/messaging/profile", bad, format="json")
        assert answer.status_code == 400, (bad, answer.content)


# --- The client's copy of the record; compliance sees metadata only ---------------------------


def test_the_client_downloads_the_whole_conversation_as_json_and_escaped_html(
    conversation, client_api, therapist_api, client_user
):
    script = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    first = _send(client_api, conversation, script).json()
    client_api.patch(
        _url(conversation, f"/messages/{first['id']}"), {"body": "edited text"}, format="json"
    )
    gone = _send(therapist_api, conversation, "withdrawn by the therapist").json()
    therapist_api.delete(_url(conversation, f"/messages/{gone['id']}"))
    _send(therapist_api, conversation, "Thursday at 10.")
    before = AuditEvent.objects.count()

    exported = client_api.get(_url(conversation, "/export"))
    assert exported.status_code == 200
    assert exported["Content-Disposition"].startswith("attachment;")
    assert "no-store" in exported["Cache-Control"]
    record = exported.json()
    assert record["conversation"]["id"] == str(conversation.pk)
    assert [(m["seq"], m["body"]) for m in record["messages"]] == [
        (1, "edited text"),
        (3, "Thursday at 10."),
    ]
    assert [v["body"] for v in record["messages"][0]["earlier"]] == [script]

    page = client_api.get(_url(conversation, "/export/print"))
    assert page.status_code == 200 and page["Content-Type"].startswith("text/html")
    assert page["Content-Disposition"].startswith("attachment;")
    assert "default-src 'none'" in page["Content-Security-Policy"]
    html = page.content.decode()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "Thursday at 10." in html and "withdrawn" not in html
    exports = AuditEvent.objects.order_by("id")[before:]
    assert [(e.action, e.patient_id) for e in exports] == [("export", client_user.pk)] * 2


def test_compliance_sees_who_wrote_when_never_what(
    conversation, client_api, compliance_api, client_user, therapist_api
):
    _send(client_api, conversation)
    listed = compliance_api.get("/api/v1/compliance/conversations/")
    assert listed.status_code == 200
    assert [(c["id"], c["client"], c["last_seq"]) for c in listed.json()["results"]] == [
        (str(conversation.pk), str(client_user.pk), 1)
    ]
    messages = compliance_api.get(f"/api/v1/compliance/conversations/{conversation.pk}/messages")
    assert messages.status_code == 200
    [row] = messages.json()["results"]
    assert set(row) == {
        "id",
        "seq",
        "sender",
        "kind",
        "version",
        "attachment_count",
        "created_at",
        "edited_at",
        "deleted_at",
    }
    for answer in (listed, messages):
        assert SECRET not in answer.content.decode() and "relapsed" not in answer.content.decode()
    read = AuditEvent.objects.filter(action="read", details__metadata=True).get()
    assert read.patient_id == client_user.pk
    for api in (client_api, therapist_api):
        assert api.get("/api/v1/compliance/conversations/").status_code == 403
