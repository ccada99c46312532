"""Session note routes, included by ``scheduling/urls.py`` under ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from scheduling.notes import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("bookings/<uuid:booking_id>/note", views.NoteView.as_view(), name="booking-note"),
    path(
        "bookings/<uuid:booking_id>/note/sign",
        views.NoteSignView.as_view(),
        name="booking-note-sign",
    ),
    path(
        "bookings/<uuid:booking_id>/note/versions",
        views.NoteVersionsView.as_view(),
        name="booking-note-versions",
    ),
]
