"""The ``seed_demo`` scheduling step: three listed demo therapists with hours, idempotently."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from scheduling.models import Licence, SessionType, TherapistProfile

pytestmark = pytest.mark.django_db


def test_seed_demo_lists_three_verified_therapists_and_is_idempotent(settings, anon_api):
    settings.DEBUG = True
    call_command("seed_demo", stdout=io.StringIO())
    call_command("seed_demo", stdout=io.StringIO())
    assert TherapistProfile.objects.count() == 3
    assert Licence.objects.filter(verified_at__isnull=False).count() == 3
    assert SessionType.objects.count() == 5  # with video/demo.py's phone session
    listed = anon_api.get("/api/v1/therapists/").json()["results"]
    assert len(listed) == 3 and all(item["next_open_slot"] for item in listed)
