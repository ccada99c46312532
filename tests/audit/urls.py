"""Test-only URLconf: the demo views of ``tests.audit.demo`` (all audited)."""

from tests.audit.demo import demo_patterns

urlpatterns = demo_patterns
