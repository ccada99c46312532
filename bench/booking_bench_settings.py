"""Settings of the booking benchmark's server: the project's, plus a bare endpoint to compare
against (``booking_bench_urls``). Used only by ``bench/bench_booking.py``."""

from api.settings import *  # noqa: F403

ROOT_URLCONF = "booking_bench_urls"
