"""Second-factor routes, mounted at ``/api/v1/auth/mfa/``."""

from django.urls import URLPattern, URLResolver, path

from api.views import mfa

urlpatterns: list[URLPattern | URLResolver] = [
    path("", mfa.MfaStatusView.as_view(), name="mfa-status"),
    path("totp", mfa.TotpBeginView.as_view(), name="mfa-totp-begin"),
    path("totp/confirm", mfa.TotpConfirmView.as_view(), name="mfa-totp-confirm"),
    path("backup-codes", mfa.BackupCodesView.as_view(), name="mfa-backup-codes"),
    path("disable", mfa.DisableView.as_view(), name="mfa-disable"),
    path("verify", mfa.VerifyView.as_view(), name="mfa-verify"),
]
