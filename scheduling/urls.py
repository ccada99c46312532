"""Scheduling routes, mounted at ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, include, path, re_path

from scheduling import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("therapists/", views.TherapistDirectoryView.as_view(), name="therapist-directory"),
    path("therapists/me/profile", views.MyProfileView.as_view(), name="therapist-me-profile"),
    path("therapists/me/settings", views.MySettingsView.as_view(), name="therapist-me-settings"),
    path(
        "therapists/me/session-types",
        views.MySessionTypesView.as_view(),
        name="therapist-me-session-types",
    ),
    path(
        "therapists/me/session-types/<uuid:pk>",
        views.MySessionTypeView.as_view(),
        name="therapist-me-session-type",
    ),
    path(
        "therapists/me/availability/rules",
        views.MyRulesView.as_view(),
        name="therapist-me-rules",
    ),
    path(
        "therapists/me/availability/overrides",
        views.MyOverridesView.as_view(),
        name="therapist-me-overrides",
    ),
    path(
        "therapists/me/availability/overrides/<uuid:pk>",
        views.MyOverrideView.as_view(),
        name="therapist-me-override",
    ),
    path("therapists/me/licences", views.MyLicencesView.as_view(), name="therapist-me-licences"),
    path(
        "therapists/me/licences/<uuid:pk>",
        views.MyLicenceView.as_view(),
        name="therapist-me-licence",
    ),
    path("therapists/me/calendars", views.MyCalendarsView.as_view(), name="therapist-me-calendars"),
    path(
        "therapists/me/calendars/<uuid:pk>",
        views.MyCalendarView.as_view(),
        name="therapist-me-calendar",
    ),
    path(
        "therapists/<uuid:therapist_id>",
        views.TherapistPublicView.as_view(),
        name="therapist-detail",
    ),
    path(
        "therapists/<uuid:therapist_id>/slots",
        views.TherapistSlotsView.as_view(),
        name="therapist-slots",
    ),
    path("admin/licences", views.AdminLicencesView.as_view(), name="admin-licences"),
    path(
        "admin/licences/<uuid:pk>/verify",
        views.AdminLicenceVerifyView.as_view(),
        name="admin-licence-verify",
    ),
    path("calendars/tokens", views.FeedTokensView.as_view(), name="calendar-feed-tokens"),
    path("calendars/tokens/<uuid:pk>", views.FeedTokenView.as_view(), name="calendar-feed-token"),
    re_path(
        r"^calendars/(?P<token>[^/]{1,256})\.ics$",
        views.CalendarFeedView.as_view(),
        name="calendar-feed",
    ),
    path("bookings/<uuid:booking_id>.ics", views.BookingIcsView.as_view(), name="booking-ics"),
    path("", include("scheduling.bookings.urls")),
]
