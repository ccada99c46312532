"""Settings of the video benchmark's app servers: the project's, served as in production.

The servers are started with ``DJANGO_DEBUG=1`` (as the WebRTC tests start them) only so that
the development keys are allowed; requests and sockets are then served with DEBUG off, as in
production (no query log, no debug cursor). Used only by ``bench/bench_video.py``."""

from api.settings import *  # noqa: F403

DEBUG = False
