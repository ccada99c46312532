"""Session notes: the author therapist only, versioned, sign-and-lock, every access audited,
and encrypted at rest (ENC-01..ENC-06), verified by reading the raw column."""

from __future__ import annotations

import base64
import json
import logging
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from api.models import Role
from audit.models import AuditEvent, Outcome
from scheduling.models import SessionNote, SessionNoteVersion
from scheduling.notes.services import NoteUnreadable, note_keys_rotate
from tests.audit.faults import audit_inserts_fail
from tests.factories import api_client_for, make_user

pytestmark = pytest.mark.django_db

SECRET_TEXT = "Client disclosed a panic disorder diagnosis; discussed sertraline."
NEW_KEY = base64.b64encode(b"k" * 32).decode()
OTHER_BYTES = base64.b64encode(b"x" * 32).decode()


def _url(booking, suffix=""):
    return f"/api/v1/bookings/{booking.pk}/note{suffix}"


def _write(api, booking, body=SECRET_TEXT, expected=0):
    return api.put(_url(booking), {"body": body, "expected_version": expected}, format="json")


def _raw_ciphertexts() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT body_encrypted, key_id FROM scheduling_sessionnoteversion ORDER BY id"
        )
        return list(cursor.fetchall())


def _dev_key() -> str:
    from django.conf import settings

    return settings.FIELD_ENCRYPTION_KEYS["dev-1"]


# --- Versions, signing, who may read ---------------------------------------------------------


def test_the_author_writes_edits_and_signs_and_history_is_kept(session, therapist_api):
    created = _write(therapist_api, session)
    assert created.status_code == 201, created.content
    assert (created.json()["version"], created.json()["body"]) == (1, SECRET_TEXT)
    edited = _write(therapist_api, session, "Second thoughts.", expected=1)
    assert edited.status_code == 200 and edited.json()["version"] == 2
    assert therapist_api.get(_url(session)).json()["body"] == "Second thoughts."
    versions = therapist_api.get(_url(session, "/versions")).json()
    assert [(v["version"], v["body"]) for v in versions] == [
        (1, SECRET_TEXT),
        (2, "Second thoughts."),
    ]

    stale = _write(therapist_api, session, "Overwrite?", expected=1)
    assert stale.status_code == 409
    assert (stale.json()["code"], stale.json()["current_version"]) == (
        "note_version_conflict",
        2,
    )

    signed = therapist_api.post(_url(session, "/sign"))
    assert signed.status_code == 200 and signed.json()["signed"] is True
    locked = _write(therapist_api, session, "After signing", expected=2)
    assert locked.status_code == 409 and locked.json()["code"] == "note_signed"
    assert therapist_api.post(_url(session, "/sign")).status_code == 409
    assert SessionNoteVersion.objects.count() == 2
    assert therapist_api.get(_url(session)).json()["body"] == "Second thoughts."


def test_notes_wait_for_the_session_to_start(profile, client_user, therapist_api):
    from django.utils import timezone

    from tests.scheduling.bookings.conftest import book, open_starts

    now = timezone.now()
    future = book(client_user, profile, open_starts(profile, now=now)[0], now=now)
    response = _write(therapist_api, future)
    assert response.status_code == 409 and response.json()["code"] == "note_too_early"
    assert not SessionNote.objects.exists()


def test_clients_other_therapists_and_staff_cannot_read_notes(
    session, therapist_api, client_api, compliance_api, admin_user
):
    """The client is refused by role; another therapist gets the same 404 as for a booking
    that does not exist (AZ-01); compliance and admins are refused by role."""
    _write(therapist_api, session)
    other = api_client_for(make_user(role=Role.THERAPIST))
    missing = type(session)(pk="00000000-0000-4000-8000-000000000000")
    for suffix in ("", "/versions"):
        assert client_api.get(_url(session, suffix)).status_code == 403
        assert compliance_api.get(_url(session, suffix)).status_code == 403
        assert api_client_for(admin_user).get(_url(session, suffix)).status_code == 403
        theirs, nothing = other.get(_url(session, suffix)), other.get(_url(missing, suffix))
        assert theirs.status_code == nothing.status_code == 404
        assert theirs.json()["detail"] == nothing.json()["detail"]
    assert _write(other, session, "Not mine").status_code == 404
    assert other.post(_url(session, "/sign")).status_code == 404
    assert SessionNoteVersion.objects.count() == 1


def test_every_read_and_write_is_audited_without_the_text(
    session, client_user, therapist, therapist_api
):
    """AUD-01: each note read (current, versions) and write is one row naming the client."""
    _write(therapist_api, session)
    therapist_api.get(_url(session))
    therapist_api.get(_url(session, "/versions"))
    api_client_for(make_user(role=Role.THERAPIST)).get(_url(session))
    note = SessionNote.objects.get()
    events = AuditEvent.objects.filter(resource_type__startswith="scheduling.session_note")
    summary = [(e.resource_type, e.action, e.outcome, e.patient_id) for e in events.order_by("id")]
    assert summary == [
        ("scheduling.session_note", "create", Outcome.ALLOWED, client_user.pk),
        ("scheduling.session_note", "read", Outcome.ALLOWED, client_user.pk),
        ("scheduling.session_note_version", "read", Outcome.ALLOWED, client_user.pk),
        ("scheduling.session_note", "read", Outcome.DENIED, client_user.pk),
    ]
    assert events.filter(resource_id=note.pk, actor_id=therapist.pk).count() == 2
    for event in events:
        assert SECRET_TEXT not in json.dumps(event.details)
        assert "sertraline" not in json.dumps(event.details)


@pytest.mark.django_db(transaction=True)
def test_aud_07_a_note_is_neither_saved_nor_shown_when_its_audit_row_fails(session, therapist):
    """AUD-07 on a real PHI route: the database refuses the audit row → 500 without the text,
    and the note written in that request is not committed."""
    api = api_client_for(therapist)
    api.raise_request_exception = False
    with audit_inserts_fail():
        written = _write(api, session)
    assert written.status_code == 500
    assert "panic" not in written.content.decode()
    assert not SessionNote.objects.exists() and not SessionNoteVersion.objects.exists()

    assert _write(api, session).status_code == 201
    with audit_inserts_fail():
        read = api.get(_url(session))
    assert read.status_code == 500
    assert "panic" not in read.content.decode()


# --- ENC-01..ENC-06 -------------------------------------------------------------------------------


def test_enc_01_the_raw_column_holds_only_ciphertext_with_a_key_id(session, therapist_api):
    _write(therapist_api, session)
    [(stored, key_id)] = _raw_ciphertexts()
    assert key_id == "dev-1"
    assert stored.startswith("v1:dev-1:")
    assert "panic" not in stored and SECRET_TEXT not in stored
    assert "panic" not in base64.urlsafe_b64decode(stored.split(":", 2)[2]).decode("latin-1")


def test_enc_02_a_new_key_takes_new_writes_old_rows_still_read_and_rotation_resumes(
    session, therapist_api
):
    for n in range(3):
        _write(therapist_api, session, f"{SECRET_TEXT} v{n + 1}", expected=n)
    keys = {"dev-1": _dev_key(), "k2": NEW_KEY}
    with override_settings(FIELD_ENCRYPTION_KEYS=keys, FIELD_ENCRYPTION_KEY_ID="k2"):
        _write(therapist_api, session, "Written under k2", expected=3)
        assert [k for _, k in _raw_ciphertexts()] == ["dev-1", "dev-1", "dev-1", "k2"]
        assert _raw_ciphertexts()[-1][0].startswith("v1:k2:")
        assert len(therapist_api.get(_url(session, "/versions")).json()) == 4

        # Interrupted after one batch of one row: every row still reads; a re-run finishes.
        partial = note_keys_rotate(batch_size=1, max_batches=1)
        assert (partial.rotated, partial.remaining) == (1, 2)
        assert len(therapist_api.get(_url(session, "/versions")).json()) == 4
        out = StringIO()
        call_command("rotate_note_keys", stdout=out)
        assert "2 note versions" in out.getvalue() and "0 rows remaining" in out.getvalue()
        assert {k for _, k in _raw_ciphertexts()} == {"k2"}

    with override_settings(FIELD_ENCRYPTION_KEYS={"k2": NEW_KEY}, FIELD_ENCRYPTION_KEY_ID="k2"):
        bodies = [v["body"] for v in therapist_api.get(_url(session, "/versions")).json()]
        assert bodies[0] == f"{SECRET_TEXT} v1" and bodies[-1] == "Written under k2"


def test_enc_02_rotating_secret_key_does_not_affect_decryption(session, therapist_api):
    _write(therapist_api, session)
    with override_settings(SECRET_KEY="a-completely-different-secret-key-" + "z" * 30):
        assert therapist_api.get(_url(session)).json()["body"] == SECRET_TEXT


def _assert_explicit_failure(response):
    assert response.status_code == 500
    assert response["Content-Type"] == "application/problem+json"
    body = response.content.decode()
    assert response.json()["code"] == "decryption_failed"
    assert "v1:" not in body and "panic" not in body


@pytest.mark.parametrize(
    "keys",
    [
        {"k2": NEW_KEY},  # the note's key is gone
        {"dev-1": OTHER_BYTES, "k2": NEW_KEY},  # the id is there with the wrong bytes
    ],
)
def test_enc_03_a_missing_or_wrong_key_is_an_explicit_error(session, therapist_api, keys):
    """ENC-03: a missing or wrong key is an explicit 500 problem, never ciphertext as text;
    the rotation job refuses and rewrites nothing."""
    _write(therapist_api, session)
    before = _raw_ciphertexts()
    with override_settings(FIELD_ENCRYPTION_KEYS=keys, FIELD_ENCRYPTION_KEY_ID="k2"):
        _assert_explicit_failure(therapist_api.get(_url(session)))
        _assert_explicit_failure(therapist_api.get(_url(session, "/versions")))
        with pytest.raises(NoteUnreadable):
            note_keys_rotate()
    assert _raw_ciphertexts() == before  # nothing rewritten, nothing "mangled"


def test_enc_04_one_flipped_byte_is_a_decryption_error(session, therapist_api):
    """ENC-04: one flipped byte of the stored ciphertext is a decryption error (AEAD)."""
    _write(therapist_api, session)
    [(stored, _)] = _raw_ciphertexts()
    prefix, key_id, payload = stored.split(":", 2)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[20] ^= 0x01
    tampered = f"{prefix}:{key_id}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    SessionNoteVersion.objects.update(body_encrypted=tampered)
    _assert_explicit_failure(therapist_api.get(_url(session)))


def test_enc_04_a_ciphertext_moved_to_another_version_does_not_decrypt(session, therapist_api):
    """ENC-04: a ciphertext moved to another version fails its associated data."""
    _write(therapist_api, session)
    _write(therapist_api, session, "v2", expected=1)
    first = SessionNoteVersion.objects.get(version=1)
    SessionNoteVersion.objects.filter(version=2).update(body_encrypted=first.body_encrypted)
    _assert_explicit_failure(therapist_api.get(_url(session)))


def test_enc_06_note_text_never_reaches_logs_audit_or_error_bodies(session, therapist_api, caplog):
    caplog.set_level(logging.DEBUG)
    _write(therapist_api, session)
    responses = [
        therapist_api.get(_url(session)),
        _write(therapist_api, session, SECRET_TEXT + " stale", expected=0),  # 409
        _write(therapist_api, session, SECRET_TEXT * 1000, expected=1),  # 400: too long
        api_client_for(make_user(role=Role.THERAPIST)).get(_url(session)),  # 404
    ]
    with override_settings(FIELD_ENCRYPTION_KEYS={"k2": NEW_KEY}, FIELD_ENCRYPTION_KEY_ID="k2"):
        responses.append(therapist_api.get(_url(session)))  # 500
    for response in responses[1:]:
        assert "panic" not in response.content.decode()
    assert "panic" not in caplog.text and "sertraline" not in caplog.text
    assert "cannot be decrypted" in caplog.text  # the failure itself is logged, by ids
    details = json.dumps(list(AuditEvent.objects.values_list("details", flat=True)))
    assert "panic" not in details and "sertraline" not in details
