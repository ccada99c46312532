"""Client profile routes, included under ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from scheduling.clients import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("clients/me/profile", views.MyClientProfileView.as_view(), name="client-me-profile"),
    path(
        "clients/<uuid:client_id>/profile",
        views.ClientProfileView.as_view(),
        name="client-profile",
    ),
    path(
        "therapists/me/clients/lookup",
        views.ClientPhoneLookupView.as_view(),
        name="therapist-me-client-lookup",
    ),
]
