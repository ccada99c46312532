"""The ``seed_demo`` messaging step: client1 and therapist1 have a conversation, idempotently."""

from __future__ import annotations

from datetime import datetime

import pytest

from api.management.commands.seed_demo import Demo, seed_people
from messaging.demo import seed_messaging
from messaging.models import Conversation, Message, MessagingProfile
from scheduling.bookings.demo import seed_bookings
from scheduling.demo import seed_scheduling
from tests.factories import api_client_for
from video.demo import seed_video

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast(fixed_clock: datetime, settings) -> datetime:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return fixed_clock


def _seed(now: datetime) -> Demo:
    demo = Demo(now=now)
    for step in (seed_people, seed_scheduling, seed_bookings, seed_video, seed_messaging):
        step(demo)
    return demo


def test_the_demo_conversation_is_there_once_and_readable(fixed_clock):
    demo = _seed(fixed_clock)
    conversation = Conversation.objects.get(
        client=demo.users["client1"], therapist=demo.users["therapist1"]
    )
    assert any(str(conversation.pk) in note for note in demo.notes)
    _seed(fixed_clock)  # a second run adds nothing
    assert Conversation.objects.count() == 1
    assert Message.objects.filter(kind="text").count() == 2
    assert MessagingProfile.objects.get(user=demo.users["therapist1"]).response_time_hours == 24
    answer = api_client_for(demo.users["client1"]).get(
        f"/api/v1/conversations/{conversation.pk}/messages"
    )
    assert answer.status_code == 200
    assert [m["seq"] for m in answer.json()["results"] if m["kind"] == "text"][-1] == 1
