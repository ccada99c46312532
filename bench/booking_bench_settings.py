"""Settings of the booking benchmark's server: the benchmarks' (``bench_settings``: the
project's with DEBUG off, as in production), plus a bare endpoint to compare against
(``booking_bench_urls``). Used only by ``bench/bench_booking.py``."""

from bench_settings import *  # noqa: F403

ROOT_URLCONF = "booking_bench_urls"
