"""``seed_demo`` step: a conversation between client1 and therapist1 (after the video step,
which gives them a confirmed session), with two messages and therapist1's expectations
(a 24-hour response time, weekday office hours in New York, an automatic reply).

Idempotent: the pair's one conversation is reused, the messages have fixed client ids (sending
them again returns them), the settings are written only when missing. Everything is fake.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from messaging import services
from messaging.models import MessagingProfile
from scheduling.bookings.selectors import bookings_of
from scheduling.clients.selectors import RELATIONSHIP

if TYPE_CHECKING:
    from api.management.commands.seed_demo import Demo

CLIENT, THERAPIST = "client1", "therapist1"
MESSAGES = (
    (CLIENT, "Hi, could we talk about moving next week's session to the afternoon?"),
    (THERAPIST, "Of course. Tuesday at 15:00 works for me; shall I move it?"),
)


def seed_messaging(demo: Demo) -> None:
    client, therapist = demo.users[CLIENT], demo.users[THERAPIST]
    if not MessagingProfile.objects.filter(user=therapist).exists():
        services.messaging_profile_update(
            user=therapist,
            now=demo.now,
            time_zone="America/New_York",
            response_time_hours=24,
            office_hours=[{"weekday": d, "start": "09:00", "end": "17:00"} for d in range(5)],
            auto_reply="Thanks for your message. I answer within one working day.",
        )
    booking = (
        bookings_of(user=client, now=demo.now)
        .filter(therapist__user=therapist, status__in=RELATIONSHIP)
        .first()
    )
    if booking is None:
        demo.notes.append("Messaging: no session between client1 and therapist1 yet.")
        return
    conversation, _ = services.conversation_open(booking_id=booking.pk, user=client, now=demo.now)
    for i, (who, body) in enumerate(MESSAGES):
        services.message_send(
            conversation_id=conversation.pk,
            sender=demo.users[who],
            body=body,
            client_message_id=uuid.uuid5(uuid.NAMESPACE_URL, f"demo-message-{i}"),
            now=demo.now,
        )
    demo.notes.append(
        f"Messaging: client1 and therapist1 have a conversation ({conversation.pk}): "
        f"GET /api/v1/conversations/{conversation.pk}/messages, or open the socket "
        "/ws/messages/ and say hello with an access token."
    )
