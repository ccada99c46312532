"""The signed-in account's routes, mounted at ``/api/v1/``."""

from django.urls import URLPattern, URLResolver, path

from api.views import me

urlpatterns: list[URLPattern | URLResolver] = [
    path("me", me.MeView.as_view(), name="me"),
    path("me/password", me.PasswordChangeView.as_view(), name="me-password"),
]
