"""Shared fixtures: fixed personas and API clients, and database/service markers.

Personas: ``client_user`` (a client), ``therapist`` and ``other_therapist``,
``compliance_officer``, ``admin_user``, and ``outsider`` (a client unrelated to anything).
Tests marked ``postgres`` or ``redis`` skip without that service locally and fail in CI; the
``postgres`` ones run on a single xdist worker.
"""

from __future__ import annotations

import os

import pytest
from django.db import connection
from rest_framework.test import APIClient

from api.models import Role, User
from tests.clock import fixed_clock
from tests.factories import api_client_for, make_user

__all__ = ["fixed_clock"]

IN_CI = os.environ.get("CI", "").lower() == "true"


def _need(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """PostgreSQL tests (the concurrency ones open up to 50 connections each) all run on one
    xdist worker, one after another, so two of them never exhaust the server's connections."""
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.xdist_group("postgres"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _need("needs PostgreSQL: set DATABASE_URL=postgres://...")
    if item.get_closest_marker("redis") and not os.environ.get("REDIS_URL"):
        _need("needs Redis: set REDIS_URL=redis://...")


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Rate-limit counters live in the cache: every test starts from zero."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def client_user(db: None) -> User:
    return make_user(role=Role.CLIENT)


@pytest.fixture
def outsider(db: None) -> User:
    return make_user(role=Role.CLIENT)


@pytest.fixture
def therapist(db: None) -> User:
    return make_user(role=Role.THERAPIST)


@pytest.fixture
def other_therapist(db: None) -> User:
    return make_user(role=Role.THERAPIST)


@pytest.fixture
def compliance_officer(db: None) -> User:
    return make_user(role=Role.COMPLIANCE_OFFICER)


@pytest.fixture
def admin_user(db: None) -> User:
    return make_user(role=Role.ADMIN, is_superuser=True)


@pytest.fixture
def anon_api() -> APIClient:
    return APIClient()


@pytest.fixture
def client_api(client_user: User) -> APIClient:
    return api_client_for(client_user, mfa=False)


@pytest.fixture
def therapist_api(therapist: User) -> APIClient:
    return api_client_for(therapist)


@pytest.fixture
def compliance_api(compliance_officer: User) -> APIClient:
    return api_client_for(compliance_officer)
