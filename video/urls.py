"""Video routes, included under ``/api/v1/`` (the sockets are in ``video/routing.py``)."""

from django.urls import URLPattern, URLResolver, include, path

from video import attendance_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("video/rooms/<uuid:booking_id>/join", views.RoomJoinView.as_view(), name="video-join"),
    path(
        "video/rooms/<uuid:booking_id>/attendance",
        attendance_views.RoomAttendanceView.as_view(),
        name="video-attendance",
    ),
    path(
        "video/rooms/<uuid:booking_id>/quality",
        views.RoomQualityView.as_view(),
        name="video-quality",
    ),
    path("", include("video.precall.urls")),
]
