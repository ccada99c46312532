"""Test-only URLconf with one route that serves a protected model without auditing."""

from django.urls import path

from tests.audit.demo import UnauditedClientApi, demo_patterns

urlpatterns = [
    *demo_patterns,
    path("demo/raw/<uuid:pk>", UnauditedClientApi.as_view(), name="demo-raw"),
]
