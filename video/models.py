"""Video rooms: one per video or audio booking, and the people in it (docs/video.md).

A room's window comes from its booking (``video.services.room_window``); its live state (who is
connected, waiting or in the call) is kept on the participant rows so that every web process
sees the same, and changed only with the room row locked (``video/locks.py``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class RoomMode(models.TextChoices):
    VIDEO = "video", "Video"
    AUDIO = "audio", "Audio only"


class EndReason(models.TextChoices):
    ENDED_BY_THERAPIST = "ended_by_therapist", "Ended by the therapist"
    WINDOW_CLOSED = "window_closed", "The room's window closed"


class Room(models.Model):
    """The call of one booking. Created on the first join; never reopened once ended."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    booking = models.OneToOneField(
        "scheduling.Booking", on_delete=models.PROTECT, related_name="video_room"
    )
    mode = models.CharField(max_length=8, choices=RoomMode.choices)
    # Negotiation rounds: bumped (F() + 1, room locked) each time the call is (re)negotiated.
    round = models.PositiveIntegerField(default=0)
    allow_notes = models.BooleanField(default=True)
    created_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=24, choices=EndReason.choices, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=[m.value for m in RoomMode]), name="video_room_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="")
                | Q(ended_at__isnull=False) & ~Q(end_reason=""),
                name="video_room_ended_with_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"Room {self.pk}"


class WebProcess(models.Model):
    """A web process serving video sockets, as long as it beats (``video.liveness``): it
    writes ``beat_at`` every ``VIDEO_PROCESS_BEAT_SECONDS`` from its first ``hello`` on. One
    whose beat is older than ``VIDEO_PROCESS_DEAD_SECONDS`` is taken for dead: its sockets'
    participants are detached as of that beat, and the row goes once nobody is left on it."""

    id = models.UUIDField(primary_key=True, editable=False)  # the process's own, per start
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["beat_at"], name="video_webprocess_beat_at")]

    def __str__(self) -> str:
        return f"WebProcess {self.pk}"


class ParticipantRole(models.TextChoices):
    THERAPIST = "therapist", "Therapist"
    CLIENT = "client", "Client"
    # Added by the therapist in a later issue; admitted like a client.
    INTERPRETER = "interpreter", "Interpreter"
    GUARDIAN = "guardian", "Guardian"


class PresenceState(models.TextChoices):
    AWAY = "away", "Not connected"
    WAITING = "waiting", "In the waiting room"
    IN_CALL = "in_call", "In the call"
    LEFT = "left", "Left for good"


class Participant(models.Model):
    """One person in one room.

    ``token_jti`` is the id of the only room token that may open a socket now (a join replaces
    it; leaving for good clears it). ``channel_name`` is the socket that holds the place (empty
    when none) and ``process`` the web process that serves it (``video.liveness``);
    ``resume_hash``/``resume_until`` let a dropped socket take the place back.
    ``ice_restart``: that socket's client said (``hello``) it restarts ICE on its peer
    connection when a ``restart`` round asks it to, rather than building a new one.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    room = models.ForeignKey(Room, on_delete=models.PROTECT, related_name="participants")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=16, choices=ParticipantRole.choices)
    state = models.CharField(
        max_length=8, choices=PresenceState.choices, default=PresenceState.AWAY
    )
    token_jti = models.CharField(max_length=36, blank=True)
    channel_name = models.CharField(max_length=200, blank=True)
    process = models.ForeignKey(
        WebProcess, on_delete=models.PROTECT, null=True, blank=True, related_name="participants"
    )
    resume_hash = models.CharField(max_length=64, blank=True)
    resume_until = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(null=True, blank=True)
    admitted_at = models.DateTimeField(null=True, blank=True)
    left_at = models.DateTimeField(null=True, blank=True)
    last_note_at = models.DateTimeField(null=True, blank=True)
    audio = models.BooleanField(default=True)
    video = models.BooleanField(default=True)
    ice_restart = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["room", "user"], name="video_participant_once"),
            models.CheckConstraint(
                condition=Q(role__in=[r.value for r in ParticipantRole]),
                name="video_participant_role_valid",
            ),
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in PresenceState]),
                name="video_participant_state_valid",
            ),
            models.CheckConstraint(
                condition=~Q(state="left") | Q(token_jti="", channel_name=""),
                name="video_participant_left_holds_nothing",
            ),
            models.CheckConstraint(
                condition=Q(process__isnull=True) | ~Q(channel_name=""),
                name="video_participant_process_only_with_socket",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "state"], name="video_participant_user_state"),
        ]

    def __str__(self) -> str:
        return f"Participant {self.pk}"


class AttendanceKind(models.TextChoices):
    """What an interval says of a participant (docs/video.md, "Attendance")."""

    PRESENT = "present", "A socket held their place (waiting room or call)"
    IN_CALL = "in_call", "In the call (admitted)"
    MEDIA = "media", "Media connected (reported by their peer connection)"


class IntervalEnd(models.TextChoices):
    """Why an interval closed."""

    REPORTED = "reported", "The client reported its connection down"
    DETACHED = "detached", "The socket closed"
    REPLACED = "replaced", "Another socket took the place"
    LEFT = "left", "Left for good"
    DENIED = "denied", "Turned away from the waiting room"
    ENDED = "ended", "The room ended"


class AttendanceInterval(models.Model):
    """One stretch of a participant's presence, admission or media connection, in server time.

    Opened and closed only by ``video.signalling`` with the room row locked; at most one open
    interval per participant and kind. ``ended_at`` is null while it lasts."""

    participant = models.ForeignKey(Participant, on_delete=models.PROTECT, related_name="intervals")
    kind = models.CharField(max_length=8, choices=AttendanceKind.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=8, choices=IntervalEnd.choices, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in AttendanceKind]),
                name="video_interval_kind_valid",
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True, end_reason="")
                | Q(ended_at__gte=models.F("started_at")) & ~Q(end_reason=""),
                name="video_interval_ends_after_start_with_reason",
            ),
            models.UniqueConstraint(
                fields=["participant", "kind"],
                condition=Q(ended_at__isnull=True),
                name="video_interval_one_open_per_kind",
            ),
        ]
        indexes = [
            models.Index(fields=["participant", "started_at"], name="video_interval_participant"),
        ]

    def __str__(self) -> str:
        return f"AttendanceInterval {self.pk}"


class QualitySample(models.Model):
    """One call-quality summary a participant's client sent (``stats``), in server time: what
    support needs to explain a bad call, never where it came from (no address, no candidate).
    ``relay``: the media went through TURN. Null when the client could not measure it."""

    participant = models.ForeignKey(
        Participant, on_delete=models.PROTECT, related_name="quality_samples"
    )
    at = models.DateTimeField()
    rtt_ms = models.FloatField(null=True, blank=True)
    loss = models.FloatField(null=True, blank=True)  # fraction of packets lost, 0 to 1
    jitter_ms = models.FloatField(null=True, blank=True)
    bitrate_in_kbps = models.FloatField(null=True, blank=True)
    bitrate_out_kbps = models.FloatField(null=True, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    relay = models.BooleanField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(loss__isnull=True) | Q(loss__gte=0, loss__lte=1),
                name="video_quality_loss_fraction",
            ),
            models.CheckConstraint(
                condition=(Q(rtt_ms__isnull=True) | Q(rtt_ms__gte=0))
                & (Q(jitter_ms__isnull=True) | Q(jitter_ms__gte=0))
                & (Q(bitrate_in_kbps__isnull=True) | Q(bitrate_in_kbps__gte=0))
                & (Q(bitrate_out_kbps__isnull=True) | Q(bitrate_out_kbps__gte=0)),
                name="video_quality_not_negative",
            ),
        ]
        indexes = [
            models.Index(fields=["participant", "at"], name="video_quality_participant_at"),
        ]

    def __str__(self) -> str:
        return f"QualitySample {self.pk}"
