"""WebSocket routes: the signalling socket of a room (docs/video.md, "Signalling").

The room token never comes from the URL: a query string is not read (VID-03)."""

from django.urls import URLPattern, URLResolver, path

from video.consumers import VideoSignalConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/video/<uuid:room_id>/", VideoSignalConsumer.as_asgi()),
]
