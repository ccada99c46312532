"""The reference video page and its two files (mounted at ``/video/`` by ``api/urls.py``)."""

from django.urls import path

from video import pages

urlpatterns = [
    path("assets/<str:name>", pages.asset, name="video-page-asset"),
    path("<uuid:booking_id>/", pages.room, name="video-room-page"),
]
