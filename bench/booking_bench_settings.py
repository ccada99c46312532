"""Settings of the booking benchmark's server: the project's, plus a bare endpoint to compare
against (``booking_bench_urls``). Used only by ``bench/bench_booking.py``.

The server is started with ``DJANGO_DEBUG=1`` only so that the development keys are allowed;
requests are then served as in production, with DEBUG off (no query log, no debug cursor)."""

from api.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "booking_bench_urls"
