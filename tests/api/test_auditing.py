"""``api.auditing``: identity's port to the audit trail, filled in by the audit app."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from api import auditing
from api.auditing import Outcome, audit_event_record
from api.models import User
from api.services.users import user_deactivate, user_profile_update
from audit.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_the_audit_app_records_what_identity_sends(client_user):
    request = RequestFactory().post("/api/v1/auth/token", REMOTE_ADDR="203.0.113.7")
    audit_event_record(
        action="auth.login.failed",
        outcome=Outcome.DENIED,
        request=request,
        resource_type="user",
        resource_id=str(client_user.pk),
        details={"reason": "wrong_password", "password": "hunter2"},
    )
    [event] = AuditEvent.objects.all()
    assert (
        event.action,
        event.outcome,
        event.actor_id,
        event.actor_label,
        event.source_ip,
        event.resource_type,
        event.resource_id,
        event.details,
    ) == (
        "auth.login.failed",
        "denied",
        None,
        "anonymous",
        "203.0.113.7",
        "user",
        str(client_user.pk),
        {"reason": "wrong_password", "password": "[redacted]"},
    )


def test_without_a_recorder_the_port_raises_and_the_change_is_undone(
    client_user, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(auditing, "_recorder", [])
    before = client_user.full_name
    with pytest.raises(ImproperlyConfigured, match="has not registered its recorder"):
        user_profile_update(
            user=client_user, full_name="Ada L.", request=RequestFactory().patch("/api/v1/me")
        )
    assert User.objects.get(pk=client_user.pk).full_name == before
    assert not AuditEvent.objects.exists()


def test_identity_events_are_written_in_the_changes_transaction(client_user, admin_user):
    with transaction.atomic():
        user_deactivate(user=client_user, by=admin_user, now=timezone.now())
        [event] = AuditEvent.objects.filter(action="account.deactivated")
        assert (event.actor_id, event.resource_id) == (admin_user.pk, str(client_user.pk))
        transaction.set_rollback(True)
    assert not AuditEvent.objects.exists()  # rolled back with the change it describes
    assert User.objects.get(pk=client_user.pk).is_active
