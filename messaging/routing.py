"""WebSocket routes of messaging: one socket per app, for all of its user's conversations.

The token comes in the first message (``hello``), never from the URL."""

from django.urls import URLPattern, URLResolver, path

from messaging.consumers import MessagingConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/messages/", MessagingConsumer.as_asgi()),
]
