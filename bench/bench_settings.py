"""Settings of the benchmarks' app servers: the project's, served as in production.

The servers are started with ``DJANGO_DEBUG=1`` (as the tests start them) only so that the
development keys are allowed; requests and sockets are then served with DEBUG off, as in
production (no query log, no debug cursor timing and keeping every statement). A server loads
them with ``DJANGO_SETTINGS_MODULE=bench_settings`` and ``bench/`` on its ``PYTHONPATH``
(``bench_video.py``, ``bench_messaging.py``; ``booking_bench_settings`` builds on them)."""

from api.settings import *  # noqa: F403

DEBUG = False
