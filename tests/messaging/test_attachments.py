"""Attachments (MSG-03, MSG-02): judged by content against the allow-list, size-limited,
encrypted before they are stored, served only to the two participants as a download that is
never sniffed or cached, every download audited with the client as patient, and covered by
``rotate_note_keys``."""

from __future__ import annotations

import base64
import uuid
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import override_settings

from audit.models import AuditEvent, Outcome
from messaging.attachments import content_type_of
from messaging.models import Attachment, Message
from tests.factories import api_client_for, make_user

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
TEXT = b"My mood diary: Monday 3/10, slept badly.\n"
NEW_KEY = base64.b64encode(b"m" * 32).decode()


def _upload(api, conversation, data, name="file.bin", declared="application/octet-stream", **kw):
    return api.post(
        f"/api/v1/conversations/{conversation.pk}/messages/with-file",
        {
            "client_message_id": str(kw.get("cid") or uuid.uuid4()),
            "body": kw.get("body", "see attached"),
            "file": SimpleUploadedFile(name, data, content_type=declared),
        },
        format="multipart",
        headers={"Idempotency-Key": kw["key"]} if "key" in kw else None,
    )


def _download(api, conversation, attachment_id):
    return api.get(f"/api/v1/conversations/{conversation.pk}/attachments/{attachment_id}")


@pytest.mark.parametrize(
    ("data", "expected"),
    [(PDF, "application/pdf"), (PNG, "image/png"), (JPEG, "image/jpeg"), (TEXT, "text/plain")],
)
def test_msg_03_the_allow_list_is_judged_by_content(data, expected):
    assert content_type_of(data) == expected


@pytest.mark.parametrize(
    ("data", "name", "declared"),
    [
        (b"<html><script>alert(1)</script></html>\x00", "notes.pdf", "application/pdf"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "scan.png", "image/png"),  # a Windows executable
        (b"GIF89a\x01\x00\x01\x00", "photo.jpg", "image/jpeg"),
        (b"PK\x03\x04 zip", "report.txt", "text/plain"),
        (b"\xff\xfe\x00h\x00i", "utf16.txt", "text/plain"),
        (b"text with a bell \x07", "bell.txt", "text/plain"),
    ],
)
def test_msg_03_anything_else_is_refused_whatever_its_name_or_declared_type(
    conversation, client_api, data, name, declared, attachments_dir
):
    answer = _upload(client_api, conversation, data, name=name, declared=declared)
    assert answer.status_code == 415, answer.content
    assert answer["Content-Type"] == "application/problem+json"
    assert answer.json()["code"] == "attachment_type_refused"
    assert Message.objects.count() == Attachment.objects.count() == 0
    assert not attachments_dir.exists() or not any(attachments_dir.iterdir())


def test_msg_03_a_file_over_the_limit_is_refused(conversation, client_api, settings):
    settings.MESSAGING_ATTACHMENT_MAX_BYTES = 1000
    answer = _upload(client_api, conversation, b"a" * 1001, name="big.txt")
    assert (answer.status_code, answer.json()["code"]) == (413, "attachment_too_large")
    assert _upload(client_api, conversation, b"a" * 1000, name="ok.txt").status_code == 201
    empty = _upload(client_api, conversation, b"", name="empty.txt")
    assert empty.status_code == 400
    assert Attachment.objects.count() == 1


def test_msg_04_idempotency_key_replays_a_send_with_a_file(
    conversation, client_api, therapist_api, attachments_dir
):
    cid = uuid.uuid4()
    first = _upload(client_api, conversation, PNG, name="scan.png", cid=cid, key="file-1")
    replay = _upload(client_api, conversation, PNG, name="scan.png", cid=cid, key="file-1")
    assert (first.status_code, replay.status_code) == (201, 201), replay.content
    assert "Idempotency-Replayed" not in first.headers
    assert replay.headers["Idempotency-Replayed"] == "true"
    assert replay.json() == first.json()
    assert Message.objects.count() == Attachment.objects.count() == 1
    assert len(list(attachments_dir.iterdir())) == 1
    [listed] = first.json()["attachments"]
    assert _download(therapist_api, conversation, listed["id"]).content == PNG  # read whole


@pytest.mark.parametrize(
    ("data", "name", "body"),
    [
        (JPEG, "scan.png", "see attached"),
        (PNG, "other.png", "see attached"),
        (PNG, "scan.png", "see this"),
    ],
    ids=["another file", "another name", "another text"],
)
def test_msg_04_the_same_key_with_another_file_is_a_422_and_stores_nothing(
    conversation, client_api, attachments_dir, data, name, body
):
    cid = uuid.uuid4()
    _upload(client_api, conversation, PNG, name="scan.png", cid=cid, key="file-2")
    trail = AuditEvent.objects.count()

    reused = _upload(client_api, conversation, data, name=name, body=body, cid=cid, key="file-2")

    assert (reused.status_code, reused.json()["code"]) == (422, "idempotency_key_reused")
    assert reused["Content-Type"] == "application/problem+json"
    assert Message.objects.count() == Attachment.objects.count() == 1
    assert len(list(attachments_dir.iterdir())) == 1
    assert AuditEvent.objects.count() == trail


def test_msg_03_the_other_participant_downloads_it_as_an_attachment_never_sniffed_or_cached(
    conversation, client_api, therapist_api, client_user, therapist
):
    sent = _upload(client_api, conversation, PDF, name='../../evil"; x=.exe', declared="text/html")
    assert sent.status_code == 201, sent.content
    [listed] = sent.json()["attachments"]
    assert (listed["content_type"], listed["size"]) == ("application/pdf", len(PDF))
    assert (
        listed["name"].endswith(".pdf") and "/" not in listed["name"] and '"' not in listed["name"]
    )
    before = AuditEvent.objects.count()
    got = _download(therapist_api, conversation, listed["id"])
    assert got.status_code == 200 and got.content == PDF
    assert got["Content-Type"] == "application/pdf"
    assert got["Content-Disposition"].startswith("attachment;")
    assert got["X-Content-Type-Options"] == "nosniff"
    assert "no-store" in got["Cache-Control"]
    [event] = AuditEvent.objects.order_by("id")[before:]
    assert (event.action, event.resource_type, event.resource_id) == (
        "read",
        "messaging.attachment",
        listed["id"],
    )
    assert (event.actor_id, event.patient_id) == (therapist.pk, client_user.pk)
    history = therapist_api.get(f"/api/v1/conversations/{conversation.pk}/messages").json()
    assert history["results"][0]["attachments"] == [listed]


def test_msg_03_only_the_participants_download(
    conversation, client_api, other_therapist, compliance_officer, client_user
):
    attachment_id = _upload(client_api, conversation, TEXT, name="diary.txt").json()["attachments"][
        0
    ]["id"]
    for user, expected in (
        (make_user(), 404),
        (other_therapist, 404),
        (compliance_officer, 403),
    ):
        answer = _download(api_client_for(user), conversation, attachment_id)
        assert answer.status_code == expected
        assert b"mood diary" not in answer.content
    denied = AuditEvent.objects.filter(
        resource_type="messaging.conversation", outcome=Outcome.DENIED
    )
    assert denied.count() == 3 and {e.patient_id for e in denied} == {client_user.pk}


def test_msg_03_a_deleted_messages_file_is_gone_for_the_other_side(
    conversation, client_api, therapist_api
):
    sent = _upload(client_api, conversation, PNG, name="x.png").json()
    client_api.delete(f"/api/v1/conversations/{conversation.pk}/messages/{sent['id']}")
    answer = _download(therapist_api, conversation, sent["attachments"][0]["id"])
    assert answer.status_code == 404


def test_msg_02_the_stored_file_and_its_name_hold_no_plaintext(
    conversation, client_api, attachments_dir
):
    _upload(client_api, conversation, TEXT, name="mood-diary-jane.txt")
    row = Attachment.objects.get()
    [stored] = list(attachments_dir.iterdir())
    raw = stored.read_bytes()
    assert raw.startswith(b"v1:dev-1:") and b"mood" not in raw and b"diary" not in raw
    assert "jane" not in stored.name and "jane" not in row.name_encrypted
    assert row.key_id == "dev-1"


def test_msg_02_rotate_note_keys_re_encrypts_messages_versions_and_files(
    conversation, client_api, attachments_dir, django_capture_on_commit_callbacks
):
    sent = _upload(client_api, conversation, TEXT, name="diary.txt", body="first text").json()
    client_api.patch(
        f"/api/v1/conversations/{conversation.pk}/messages/{sent['id']}",
        {"body": "second text"},
        format="json",
    )
    from django.conf import settings

    keys = {"dev-1": settings.FIELD_ENCRYPTION_KEYS["dev-1"], "m2": NEW_KEY}
    with override_settings(FIELD_ENCRYPTION_KEYS=keys, FIELD_ENCRYPTION_KEY_ID="m2"):
        out = StringIO()
        with django_capture_on_commit_callbacks(execute=True):
            call_command("rotate_note_keys", stdout=out)
        assert "3 message rows" in out.getvalue() and "0 rows remaining" in out.getvalue()
    [stored] = list(attachments_dir.iterdir())  # the old file removed once committed
    assert stored.read_bytes().startswith(b"v1:m2:")
    with override_settings(FIELD_ENCRYPTION_KEYS={"m2": NEW_KEY}, FIELD_ENCRYPTION_KEY_ID="m2"):
        history = client_api.get(f"/api/v1/conversations/{conversation.pk}/messages").json()
        [message] = history["results"]
        assert message["body"] == "second text"
        versions = client_api.get(
            f"/api/v1/conversations/{conversation.pk}/messages/{sent['id']}/versions"
        ).json()
        assert [v["body"] for v in versions] == ["first text"]
        file = _download(client_api, conversation, message["attachments"][0]["id"])
        assert file.content == TEXT
