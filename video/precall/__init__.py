"""The pre-call test: an echo peer in a media worker (docs/video.md, "Pre-call test").

``services`` (start, offer, finished), ``tokens``, ``workers`` (the media-worker interface, the
in-process and channel-layer workers, the pool), ``echo`` (the aiortc echo peer), ``metrics``
(figures and verdict, pure), ``client`` (a Python client), ``views``/``serializers``/``urls``.
"""
