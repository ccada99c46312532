"""video/precall/workers.py's pool: its cap, the busy answer and when to retry; the message a
request crosses the channel layer as. (Running echo peers: test_calls.py.)"""

from __future__ import annotations

import time
import uuid

import pytest

from video.precall.echo import EchoLimits, fit
from video.precall.workers import EchoPool, EchoRequest, MediaWorkerBusy

LIMITS = EchoLimits(width=320, height=240, fps=15, connect_seconds=10, max_seconds=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(seconds: int = 15) -> EchoRequest:
    return EchoRequest(
        test_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        offer_sdp="v=0",
        seconds=seconds,
        deadline=time.time() + 3,
    )


def test_a_pool_admits_up_to_its_cap_then_answers_busy_until_the_soonest_test_must_end() -> None:
    clock = Clock()
    pool = EchoPool(capacity=2, limits=LIMITS, clock=clock)
    pool.admit(request(seconds=15))
    clock.now += 4
    pool.admit(request(seconds=5))
    assert pool.full

    with pytest.raises(MediaWorkerBusy) as busy:
        pool.admit(request())

    # The second test ends at the latest 10 (connect) + 5 + 2 s after its answer, 4 s later.
    assert busy.value.retry_after == 17
    assert len(pool.sessions) == 2
    clock.now += 16.5
    assert pool.retry_after() == 1  # never 0: "retry now" would be a lie while full


def test_a_test_asking_for_longer_than_the_cap_is_held_to_it() -> None:
    pool = EchoPool(capacity=1, limits=LIMITS, clock=Clock())
    session = pool.admit(request(seconds=600))
    assert session.seconds == 30


def test_a_request_crosses_the_channel_layer_as_plain_values_and_back() -> None:
    sent = request()
    message = sent.as_message()
    assert all(isinstance(v, str | int | float) for v in message.values())
    assert EchoRequest.from_message(message) == sent
    with pytest.raises(ValueError):
        EchoRequest.from_message({**message, "test": "not-a-uuid"})


@pytest.mark.parametrize(
    ("size", "fitted"),
    [
        ((640, 480), (320, 240)),
        ((1280, 720), (320, 180)),
        ((480, 640), (180, 240)),
        ((320, 240), (320, 240)),
        ((160, 120), (160, 120)),  # never scaled up
        ((333, 241), (320, 230)),  # even sizes for yuv420p
    ],
)
def test_video_larger_than_the_cap_is_scaled_to_fit_with_its_aspect(size, fitted) -> None:
    assert fit(*size, max_width=320, max_height=240) == fitted
