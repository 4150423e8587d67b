"""Bearer tokens on every endpoint but health; the token's own checks at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from medfl.api import Settings, create_app
from medfl.errors import UsageError
from tests.api.conftest import TOKEN


def _api_routes(client: TestClient) -> list[tuple[str, str]]:
    paths = client.get("/openapi.json").json()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


def test_every_api_endpoint_but_health_refuses_a_request_without_the_token(settings):
    with TestClient(create_app(settings)) as client:
        routes = _api_routes(client)
        assert len(routes) == 22
        for method, path in routes:
            url = path.replace("{experiment_id}", "x").replace("{run_id}", "x")
            url = url.replace("{name}", "x")
            response = client.request(method, url)
            if path == "/api/health":
                assert response.status_code == 200
                assert response.json() == {"status": "ok", "version": "0.1.0"}
                continue
            assert response.status_code == 401, (method, path)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["detail"] == (
                "a valid bearer token is required (Authorization: Bearer <token>)"
            )


def test_a_wrong_token_is_refused_and_the_right_one_accepted(settings):
    with TestClient(create_app(settings)) as client:
        wrong = client.get("/api/sites", headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        right = client.get("/api/experiments", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert right.json() == []


@pytest.mark.parametrize("placeholder", ["changeme", "CHANGEME", "secret", "placeholder"])
def test_the_service_refuses_to_start_on_a_placeholder_token(tmp_path: Path, placeholder):
    settings = Settings(data_dir=tmp_path, api_token=placeholder)
    with pytest.raises(UsageError, match="MEDFL_API_TOKEN is a placeholder"):
        create_app(settings)


def test_a_short_token_is_refused_and_development_mode_allows_a_placeholder(tmp_path: Path):
    with pytest.raises(UsageError, match="MEDFL_API_TOKEN is 9 characters; use at least 16"):
        create_app(Settings(data_dir=tmp_path, api_token="short-one"))
    app = create_app(Settings(data_dir=tmp_path, api_token="changeme", development=True))
    assert app.state.token == "changeme"
    assert app.state.token_generated is False


def test_without_a_token_set_one_is_generated(tmp_path: Path):
    first = create_app(Settings(data_dir=tmp_path))
    second = create_app(Settings(data_dir=tmp_path))
    assert first.state.token_generated is True
    assert len(first.state.token) >= 40
    assert first.state.token != second.state.token


def test_settings_come_from_medfl_environment_variables(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MEDFL_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MEDFL_API_TOKEN", TOKEN)
    monkeypatch.setenv("MEDFL_MAX_UPLOAD_BYTES", "2048")
    settings = Settings()
    assert settings.data_dir == tmp_path / "d"
    assert settings.max_upload_bytes == 2048
    assert settings.url() == f"sqlite:///{(tmp_path / 'd' / 'medfl.db').resolve()}"
    assert settings.api_token is not None and settings.api_token.get_secret_value() == TOKEN


def test_the_page_is_served_without_a_token_under_a_strict_content_security_policy(client):
    response = client.get("/", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'self'; img-src 'self' blob: data:;")
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert 'src="/static/app.js"' in response.text
