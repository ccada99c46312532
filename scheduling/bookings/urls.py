"""Booking routes (and the notes' and client profiles'), included by ``scheduling/urls.py``
under ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, include, path

from scheduling.bookings import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("bookings/", views.BookingsView.as_view(), name="bookings"),
    path("bookings/series", views.BookingSeriesView.as_view(), name="booking-series"),
    path("bookings/<uuid:booking_id>", views.BookingDetailView.as_view(), name="booking-detail"),
    path(
        "bookings/<uuid:booking_id>/cancel",
        views.BookingCancelView.as_view(),
        name="booking-cancel",
    ),
    path(
        "bookings/<uuid:booking_id>/reschedule",
        views.BookingRescheduleView.as_view(),
        name="booking-reschedule",
    ),
    path(
        "bookings/<uuid:booking_id>/confirm",
        views.BookingConfirmView.as_view(),
        name="booking-confirm",
    ),
    path(
        "bookings/<uuid:booking_id>/complete",
        views.BookingCompleteView.as_view(),
        name="booking-complete",
    ),
    path(
        "bookings/<uuid:booking_id>/no-show",
        views.BookingNoShowView.as_view(),
        name="booking-no-show",
    ),
    path(
        "bookings/<uuid:booking_id>/therapist-no-show",
        views.BookingTherapistNoShowView.as_view(),
        name="booking-therapist-no-show",
    ),
    path("therapists/me/schedule", views.MyScheduleView.as_view(), name="therapist-me-schedule"),
    path(
        "therapists/me/cancellation-policy",
        views.MyCancellationPolicyView.as_view(),
        name="therapist-me-cancellation-policy",
    ),
    path("", include("scheduling.notes.urls")),
    path("", include("scheduling.clients.urls")),
]
