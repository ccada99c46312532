"""Running one function in several threads at the same moment, for the concurrency tests.

Each thread is a separate client: Django gives it its own database connection, closed when the
thread ends. The threads are released together by a barrier, so their statements really
overlap instead of running one after the other as the threads happen to start.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection


def run_at_once(target: Callable[[int], Any], count: int, *, timeout: float = 120.0) -> list[Any]:
    """Call ``target(i)`` for each ``i`` in ``range(count)``, each in its own thread, all
    released together; return what each call returned, or the exception it raised, in the
    order of ``i``. Fails if a thread is still running ``timeout`` seconds after the start."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who asserts on it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    return results
