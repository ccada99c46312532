"""Pre-call tests (docs/video.md, "Pre-call test"): start one, hand its offer to a media worker,
record how it ended. No booking, no room: a test is its own resource (``video.precall``, the
test's id), so no server peer ever joins a session room (VID-09).

Audit (as the joins are): ``video.precall.started``, ``video.precall.answered``,
``video.precall.refused`` (outcome ``denied``, the problem's code as ``reason``) and
``video.precall.finished`` (verdict, reason, figures). Never an SDP, a candidate or an address.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache

from api.errors import (
    ConflictError,
    ServiceUnavailableError,
    TooManyRequestsError,
    UnauthorizedError,
    UnprocessableError,
)
from api.websocket import in_db_thread
from audit.models import Outcome
from audit.services import audit_record
from video import turn
from video.precall.echo import EchoLimits, EchoResult
from video.precall.tokens import TokenError, precall_token_decode, precall_token_mint
from video.precall.workers import (
    EchoRefused,
    EchoRequest,
    MediaWorkerBusy,
    get_worker,
    user_key,
)

RESOURCE = "video.precall"
STARTED = "video.precall.started"
ANSWERED = "video.precall.answered"
REFUSED = "video.precall.refused"
FINISHED = "video.precall.finished"


@dataclass(frozen=True)
class PrecallStart:
    test_id: uuid.UUID
    token: str
    expires_at: datetime
    seconds: int
    ice_servers: list[dict[str, Any]]
    limits: EchoLimits


@dataclass(frozen=True)
class PrecallAnswer:
    test_id: uuid.UUID
    sdp: str


def _hold_seconds() -> int:
    """The longest a test can hold a slot (and its user's running-test mark)."""
    return settings.VIDEO_PRECALL_CONNECT_SECONDS + settings.VIDEO_PRECALL_MAX_SECONDS + 5


def precall_start(*, user: Any, seconds: int | None, request: Any, now: datetime) -> PrecallStart:
    """A new test for ``user``: its token (for the offer only) and ICE servers (TURN
    credentials valid until the test must have ended)."""
    test_id = uuid.uuid4()
    seconds = seconds or settings.VIDEO_PRECALL_SECONDS
    token = precall_token_mint(
        user_id=user.pk, role=str(user.role), test_id=test_id, seconds=seconds, now=now
    )
    expires_at = now + timedelta(seconds=settings.VIDEO_PRECALL_TOKEN_TTL_SECONDS)
    audit_record(
        action=STARTED,
        actor=user,
        request=request,
        resource_type=RESOURCE,
        resource_id=str(test_id),
        details={"seconds": seconds},
    )
    return PrecallStart(
        test_id=test_id,
        token=token,
        expires_at=expires_at,
        seconds=seconds,
        ice_servers=turn.ice_servers(expires_at=expires_at + timedelta(seconds=_hold_seconds())),
        limits=EchoLimits.from_settings(),
    )


class PrecallInProgress(TooManyRequestsError):
    code = "precall_in_progress"


def _spent_key(test_id: uuid.UUID) -> str:
    return f"video.precall.spent.{test_id}"


def _record(
    action: str,
    *,
    user_id: uuid.UUID | None,
    test_id: uuid.UUID | None,
    request: Any,
    **details: Any,
) -> None:
    from api.models import User

    user = User.objects.filter(pk=user_id).first() if user_id is not None else None
    audit_record(
        action=action,
        actor=user,
        actor_label="" if user is not None else "anonymous",
        outcome=Outcome.DENIED if action == REFUSED else Outcome.ALLOWED,
        request=request,
        resource_type=RESOURCE,
        resource_id=str(test_id or ""),
        details=details,
    )


_record_async = in_db_thread(_record)


async def precall_offer(*, token: str, sdp: str, request: Any, now: datetime) -> PrecallAnswer:
    """Hand a checked offer to a media worker; the echo peer's answer. Refusals (each
    recorded): 401 ``invalid_precall_token``, 409 ``precall_token_used`` (a token opens one
    test), 429 ``precall_in_progress`` (one test per user at a time), 503
    ``media_worker_busy`` (every slot taken; the token stays good for a retry), 422
    ``offer_not_answerable``."""
    try:
        claims = precall_token_decode(token, now=now)
    except TokenError:
        await _record_async(
            REFUSED, user_id=None, test_id=None, request=request, reason="invalid_precall_token"
        )
        raise UnauthorizedError(
            "The pre-call token is not valid or has expired: start a new test.",
            code="invalid_precall_token",
        ) from None

    async def refuse(code: str) -> None:
        await _record_async(
            REFUSED, user_id=claims.user_id, test_id=claims.test_id, request=request, reason=code
        )

    spent, running = _spent_key(claims.test_id), user_key(claims.user_id)
    if not await cache.aadd(spent, 1, timeout=settings.VIDEO_PRECALL_TOKEN_TTL_SECONDS + 60):
        await refuse("precall_token_used")
        raise ConflictError(
            "This test has been run already: start a new one.", code="precall_token_used"
        )
    if not await cache.aadd(running, str(claims.test_id), timeout=_hold_seconds()):
        await cache.adelete(spent)
        await refuse("precall_in_progress")
        raise PrecallInProgress(
            "You have a test running already: wait for it to end.",
            retry_after=_hold_seconds(),
        )
    request_ = EchoRequest(
        test_id=claims.test_id,
        user_id=claims.user_id,
        offer_sdp=sdp,
        seconds=claims.seconds,
        deadline=time.time() + settings.VIDEO_PRECALL_QUEUE_SECONDS,
    )
    try:
        answer = await get_worker().echo(request_)
    except (MediaWorkerBusy, EchoRefused) as failed:
        await cache.adelete(spent)
        await cache.adelete(running)
        if isinstance(failed, MediaWorkerBusy):
            await refuse("media_worker_busy")
            raise ServiceUnavailableError(
                f"Every test slot is taken: try again in {failed.retry_after} seconds.",
                retry_after=failed.retry_after,
                code="media_worker_busy",
            ) from None
        await refuse("offer_not_answerable")
        raise UnprocessableError(
            "The offer cannot be answered: it needs audio or video the test can send back.",
            code="offer_not_answerable",
        ) from None
    await _record_async(ANSWERED, user_id=claims.user_id, test_id=claims.test_id, request=request)
    return PrecallAnswer(test_id=claims.test_id, sdp=answer)


def precall_finished(*, result: EchoResult, user: Any) -> None:
    """Record how a test ended (in the media worker's process)."""
    metrics = result.metrics.as_dict()
    audit_record(
        action=FINISHED,
        actor=user,
        actor_label="" if user is not None else "system",
        resource_type=RESOURCE,
        resource_id=str(result.test_id),
        details={
            "reason": result.reason,
            "verdict": result.verdict.level,
            "advice": [a.code for a in result.verdict.advice],
            "metrics": {k: v for k, v in metrics.items() if k != "path"},
            "relayed": metrics.get("path") == "relay",
            "frames_echoed": result.frames_echoed,
        },
    )
