import pytest


@pytest.mark.django_db
def test_healthz_answers_without_touching_dependencies(anon_api):
    response = anon_api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_and_channel_layer(anon_api):
    response = anon_api.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": True, "channel_layer": True}}


@pytest.mark.django_db
def test_unknown_path_is_a_problem_document(anon_api):
    response = anon_api.get("/api/v1/does-not-exist")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404
    assert body["type"] == "urn:telehealth:problem:not_found"
