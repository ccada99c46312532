"""Sign-in and account-recovery routes, mounted at ``/api/v1/auth/``."""

from django.urls import URLPattern, URLResolver, path

from api.views import auth

urlpatterns: list[URLPattern | URLResolver] = [
    path("register", auth.RegisterView.as_view(), name="auth-register"),
    path("token", auth.TokenView.as_view(), name="auth-token"),
    path("token/refresh", auth.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("logout", auth.LogoutView.as_view(), name="auth-logout"),
    path("logout-all", auth.LogoutAllView.as_view(), name="auth-logout-all"),
    path("password/reset", auth.PasswordResetView.as_view(), name="auth-password-reset"),
    path(
        "password/reset/confirm",
        auth.PasswordResetConfirmView.as_view(),
        name="auth-password-reset-confirm",
    ),
]
