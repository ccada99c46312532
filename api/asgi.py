"""ASGI entry point (uvicorn): Django for HTTP, Channels for WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "api.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from api.metrics import track_websockets  # noqa: E402
from api.websocket import SocketOriginValidator  # noqa: E402
from messaging.routing import websocket_urlpatterns as messaging_sockets  # noqa: E402
from video.routing import websocket_urlpatterns as video_sockets  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": track_websockets(
            SocketOriginValidator(URLRouter([*video_sockets, *messaging_sockets]))
        ),
    }
)
