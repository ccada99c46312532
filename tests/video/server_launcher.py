"""The app as the WebRTC tests run it, in its own process (tests/video/webrtc_support.py).

``serve --port N``: uvicorn with ``api.asgi:application`` on 127.0.0.1, after wrapping
``aiortc.RTCPeerConnection.__init__`` so that every peer connection made in this process adds a
line to ``$PEER_CONNECTION_LOG`` (VID-09: no server-side peer joins a session room).

``media-worker``: ``manage.py run_media_worker`` with the same wrapping and loopback ICE.

``seed --calls N``: run once against a migrated database; creates N confirmed video bookings,
each between a new client and a new listed therapist, whose room is open now (real clock), and
an outsider client; prints one JSON object with the booking ids and access tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SESSION_MINUTES = 50


def count_peer_connections(log: Path) -> None:
    import aiortc

    original = aiortc.RTCPeerConnection.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        with log.open("a") as sink:
            sink.write(f"pid={os.getpid()}\n{''.join(traceback.format_stack(limit=12))}\n")
        original(self, *args, **kwargs)

    aiortc.RTCPeerConnection.__init__ = counting_init  # type: ignore[method-assign]


def loopback_ice() -> None:
    """In the loopback-only namespace, server-side peers (the pre-call echo) offer 127.0.0.1,
    as the tests' own peers do (tests/video/conftest.py): aioice leaves loopback out."""
    import socket

    if [name for _, name in socket.if_nameindex()] != ["lo"]:
        return
    import aioice.ice
    import aioice.stun

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    aioice.stun.RETRY_MAX = 2
    aioice.stun.RETRY_RTO = 0.1


def serve(port: int) -> None:
    import uvicorn

    log = os.environ.get("PEER_CONNECTION_LOG")
    if log:
        count_peer_connections(Path(log))
    loopback_ice()
    uvicorn.run(
        "api.asgi:application", host="127.0.0.1", port=port, access_log=False, log_level="warning"
    )


def media_worker() -> None:
    """``manage.py run_media_worker`` with loopback ICE and the peer-connection log."""
    import django
    from django.core.management import call_command

    log = os.environ.get("PEER_CONNECTION_LOG")
    if log:
        count_peer_connections(Path(log))
    loopback_ice()
    cpus = os.environ.get("MEDIA_WORKER_CPUS")  # the benchmark keeps the worker on its own core
    if cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in cpus.split(",")})
    django.setup()
    call_command("run_media_worker")


def seed(calls: int) -> dict[str, Any]:
    import django

    django.setup()
    from django.utils import timezone

    from api.models import Role
    from scheduling import selectors
    from scheduling import services as profiles
    from scheduling.bookings import services as bookings
    from scheduling.models import SessionType
    from tests.factories import issue_access_token, make_user

    now = timezone.now()
    # Booked an hour ago (no notice needed), for the latest start on the 30-minute grid that is
    # at most 5 minutes away: the room (open 10 minutes before, until 15 after the end) is open
    # now and for at least 40 minutes.
    booked_at = now - timedelta(minutes=60)
    admin = make_user(role=Role.ADMIN)
    result: dict[str, Any] = {"calls": []}
    for _ in range(calls):
        therapist = make_user(role=Role.THERAPIST)
        client = make_user(role=Role.CLIENT)
        profile = profiles.therapist_profile_create(
            user=therapist,
            display_name=f"Dr {therapist.full_name}",
            time_zone="UTC",
            now=booked_at,
            min_notice_minutes=0,
        )
        profiles.availability_rules_replace(
            profile=profile,
            windows=[profiles.WeeklyWindowInput(d, 0, 24 * 60) for d in range(7)],
            now=booked_at,
        )
        session_type = profiles.session_type_create(
            profile=profile,
            name="Video session",
            duration_minutes=SESSION_MINUTES,
            price_minor=0,  # free: confirmed at once
            currency="USD",
            delivery="video",
            now=booked_at,
        )
        licence = profiles.licence_create(
            profile=profile,
            jurisdiction="US-NY",
            number=f"LIC-{therapist.pk.hex[:8]}",
            expires_on=date(now.year + 2, 1, 1),
            actor=therapist,
            request=None,
            now=booked_at,
        )
        profiles.licence_verify(licence_id=licence.pk, admin=admin, request=None, now=booked_at)
        profile.refresh_from_db()
        starts = selectors.therapist_open_slots(
            therapist=profile,
            session_type=SessionType.objects.get(pk=session_type.pk),
            start=booked_at,
            end=now + timedelta(minutes=5, seconds=1),
            now=booked_at,
        )
        assert starts, "no open start in the last hour"
        booking = bookings.booking_create(
            client=client,
            therapist_id=profile.pk,
            session_type_id=session_type.pk,
            start=starts[-1],
            jurisdiction="US-NY",
            now=booked_at,
        )
        assert booking.status == "confirmed", booking.status
        result["calls"].append(
            {
                "booking": str(booking.pk),
                "client_token": issue_access_token(client, mfa=False, now=now),
                "therapist_token": issue_access_token(therapist, mfa=True, now=now),
            }
        )
    outsider = make_user(role=Role.CLIENT)
    result["outsider_token"] = issue_access_token(outsider, mfa=False, now=now)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve").add_argument("--port", type=int, required=True)
    commands.add_parser("seed").add_argument("--calls", type=int, required=True)
    commands.add_parser("media-worker")
    args = parser.parse_args()
    os.chdir(ROOT)
    if args.command == "serve":
        serve(args.port)
    elif args.command == "media-worker":
        media_worker()
    else:
        sys.stdout.write(json.dumps(seed(args.calls)) + "\n")


if __name__ == "__main__":
    main()
