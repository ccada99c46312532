"""What one event holds: who, from where, what, when; never PHI values or control characters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from api.models import User
from api.services.ratelimit import client_ip
from audit.db import db_now
from audit.models import AuditEvent, Outcome
from audit.services import audit_record

Events = Callable[[], QuerySet[AuditEvent]]
rf = RequestFactory()


@pytest.mark.parametrize(
    ("action", "outcome", "with_actor"),
    [
        ("auth.login.succeeded", Outcome.ALLOWED, True),
        ("auth.login.failed", Outcome.DENIED, False),
        ("auth.lockout", Outcome.DENIED, False),
        ("auth.mfa.verified", Outcome.ALLOWED, True),
        ("auth.mfa.failed", Outcome.DENIED, True),
        ("auth.token.refreshed", Outcome.ALLOWED, True),
        ("auth.token.reuse_detected", Outcome.DENIED, True),
        ("auth.logout", Outcome.ALLOWED, True),
    ],
)
def test_security_events_are_recorded_with_their_fields(
    action: str, outcome: str, with_actor: bool, therapist: User, new_events: Events
) -> None:
    request = rf.post("/api/v1/auth/token", REMOTE_ADDR="198.51.100.4", HTTP_USER_AGENT="App/2")
    request.request_id = "rid-12345678"  # type: ignore[attr-defined]
    audit_record(
        action=action,
        outcome=outcome,
        actor=therapist if with_actor else None,
        request=request,
        resource_type="user",
        resource_id=str(therapist.pk),
        details={"reason": "wrong_password"} if outcome == Outcome.DENIED else None,
    )
    [event] = new_events()
    assert (event.action, event.outcome) == (action, outcome)
    assert event.actor_id == (therapist.pk if with_actor else None)
    assert event.actor_role == ("therapist" if with_actor else "")
    assert event.actor_label == ("" if with_actor else "anonymous")
    assert (event.source_ip, event.user_agent, event.request_id) == (
        "198.51.100.4",
        "App/2",
        "rid-12345678",
    )
    assert event.patient_id is None


def test_system_events_name_the_system(new_events: Events) -> None:
    audit_record(action="billing.reminder.sent", actor_label="system")
    [event] = new_events()
    assert (event.actor_id, event.actor_label, event.source_ip) == (None, "system", "")


# --- AUD-06 -------------------------------------------------------------------------------------


def test_aud_06_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    request = rf.get("/", REMOTE_ADDR="203.0.113.10", HTTP_X_FORWARDED_FOR="10.9.9.9, 1.2.3.4")
    assert client_ip(request) == "203.0.113.10"


@override_settings(TRUSTED_PROXIES=["10.0.0.0/8", "192.0.2.1"])
@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),  # one trusted proxy: its peer
        ("6.6.6.6, 198.51.100.7", "198.51.100.7"),  # the client's own claim on the left: ignored
        ("6.6.6.6, 198.51.100.7, 10.1.2.3", "198.51.100.7"),  # two trusted hops
        ("6.6.6.6, 198.51.100.7, 192.0.2.1", "198.51.100.7"),
        ("10.1.1.1, 10.2.2.2", "10.1.1.1"),  # every hop trusted: the left-most
        ("not-an-ip, 10.2.2.2", "10.2.2.2"),  # garbage stops the walk at the last trusted hop
        ("198.51.100.7:5555", "198.51.100.7"),  # a port is dropped
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("", "10.0.0.1"),
    ],
)
def test_aud_06_right_most_untrusted_address_behind_trusted_proxies(
    forwarded: str, expected: str
) -> None:
    request = rf.get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


@pytest.mark.urls("tests.audit.urls")
@pytest.mark.usefixtures("user_resource")
def test_aud_06_spoofed_forwarded_for_does_not_change_the_recorded_ip(
    therapist: User, client_user: User, therapist_api: APIClient, assign, new_events: Events
) -> None:
    assign(therapist, client_user)
    response = therapist_api.get(f"/demo/clients/{client_user.pk}", HTTP_X_FORWARDED_FOR="6.6.6.6")
    assert response.status_code == 200
    with override_settings(TRUSTED_PROXIES=["127.0.0.1"]):
        therapist_api.get(
            f"/demo/clients/{client_user.pk}", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.9"
        )
    assert [e.source_ip for e in new_events()] == ["127.0.0.1", "198.51.100.9"]


# --- AUD-13, AUD-16 -----------------------------------------------------------------------------


def test_aud_13_details_never_keep_values_of_personal_fields(new_events: Events) -> None:
    audit_record(
        action="test.minimisation",
        details={
            "email": "jane@example.test",
            "Full_Name": "Jane Roe",
            "nested": {"notes": "panic attacks", "dob": "1990-01-02", "fields": ["notes"]},
            "q": "Roe",
            "count": 3,
        },
    )
    [event] = new_events()
    assert event.details == {
        "email": "[redacted]",
        "Full_Name": "[redacted]",
        "nested": {"notes": "[redacted]", "dob": "[redacted]", "fields": ["notes"]},
        "q": "[redacted]",
        "count": 3,
    }


@pytest.mark.urls("tests.audit.urls")
@pytest.mark.usefixtures("user_resource")
def test_aud_13_search_terms_are_recorded_as_parameter_names_only(
    therapist_api: APIClient, new_events: Events
) -> None:
    assert therapist_api.get("/demo/clients?q=Quackenbush&page_size=5").status_code == 200
    [event] = new_events()
    assert event.details["params"] == ["page_size", "q"]
    assert "Quackenbush" not in str(event.details)


def test_aud_16_control_characters_are_encoded(new_events: Events) -> None:
    request = rf.get(
        "/",
        REMOTE_ADDR="127.0.0.1",
        HTTP_USER_AGENT="Evil\r\nX-Injected: 1\x1b[31m",
    )
    audit_record(
        action="auth.login.failed\nforged",
        request=request,
        resource_id="id\r\nfake line",
        details={"username\n": "bob\r\nADMIN LOGGED IN", "codes": ["\x1b[2J"]},
    )
    [event] = new_events()
    for value in (event.user_agent, event.action, event.resource_id, str(event.details)):
        assert "\r" not in value
        assert "\n" not in value
        assert "\x1b" not in value
    assert event.user_agent == "Evil\\r\\nX-Injected: 1\\x1b[31m"
    assert event.details["codes"] == ["\\x1b[2J"]


def test_aud_16_long_user_agents_are_bounded(new_events: Events) -> None:
    audit_record(action="test", request=rf.get("/", HTTP_USER_AGENT="A" * 5000))
    [event] = new_events()
    assert len(event.user_agent) == 256


# --- AUD-19 -------------------------------------------------------------------------------------


def test_aud_19_time_comes_from_the_database_clock_not_python(
    monkeypatch: pytest.MonkeyPatch, new_events: Events
) -> None:
    monkeypatch.setattr("django.utils.timezone.now", lambda: datetime(2001, 1, 1, tzinfo=UTC))
    audit_record(action="test.clock")
    [event] = new_events()
    assert abs(event.occurred_at - db_now(connection)) < timedelta(seconds=5)
    assert event.occurred_at.year != 2001


def test_aud_19_a_client_supplied_time_is_never_stored(new_events: Events) -> None:
    forged = datetime(2001, 1, 1, tzinfo=UTC)
    if connection.vendor == "postgresql":  # the database overwrites it
        AuditEvent.objects.create(action="test.clock", occurred_at=forged)
        [event] = new_events()
        assert abs(event.occurred_at - db_now(connection)) < timedelta(seconds=5)
    else:  # SQLite refuses it
        with pytest.raises(DatabaseError), transaction.atomic():
            AuditEvent.objects.create(action="test.clock", occurred_at=forged)
        assert not new_events().exists()


@pytest.mark.postgres
def test_aud_19_events_carry_their_transaction(new_events: Events) -> None:
    with transaction.atomic():
        audit_record(action="test.txid.a")
        audit_record(action="test.txid.b")
    first, second = new_events()
    assert first.txid is not None
    assert first.txid == second.txid
