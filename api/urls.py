"""Root URL configuration: probes, metrics, admin, API docs, and each app's ``/api/v1/`` routes."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from api.metrics import metrics_view
from api.views import health

handler400 = "api.errors.handler400"
handler403 = "api.errors.handler403"
handler404 = "api.errors.handler404"
handler500 = "api.errors.handler500"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # Prometheus; not an API operation
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/v1/auth/", include("api.auth_urls")),
    path("api/v1/auth/mfa/", include("api.mfa_urls")),
    path("api/v1/", include("api.me_urls")),
    path("api/v1/", include("audit.urls")),
    path("api/v1/", include("scheduling.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("video.urls")),
    path("api/v1/", include("messaging.urls")),
    path("video/", include("video.urls_pages")),  # the reference call page (not an API)
]
# With DEBUG (`make run`), the API docs' scripts and styles are served from the installed apps;
# in production the proxy serves STATIC_ROOT (`manage.py collectstatic`). Empty without DEBUG.
urlpatterns += staticfiles_urlpatterns()
