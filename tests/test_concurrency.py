"""``run_at_once``: every call runs in its own thread, at the same moment, and reports back."""

from __future__ import annotations

import threading

from tests.concurrency import run_at_once


def test_each_call_runs_in_its_own_thread_and_returns_in_order():
    names = run_at_once(lambda i: (i, threading.current_thread().name), 4)
    assert [i for i, _ in names] == [0, 1, 2, 3]
    assert len({name for _, name in names}) == 4
    assert threading.current_thread().name not in {name for _, name in names}


def test_the_calls_overlap_in_time():
    # Each call waits for all four to be inside it: only calls running at once get through.
    inside = threading.Barrier(4)
    assert run_at_once(lambda i: inside.wait(timeout=10) is not None, 4) == [True] * 4


def test_an_exception_is_returned_in_its_place():
    def target(i: int) -> int:
        if i == 1:
            raise ValueError("refused")
        return i

    first, refused, last = run_at_once(target, 3)
    assert (first, last) == (0, 2)
    assert isinstance(refused, ValueError) and str(refused) == "refused"
