"""``medfl serve``: binds 127.0.0.1 unless told, says a generated token once, refuses a
placeholder token with exit code 2 (no traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn

from medfl.cli import main


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.delenv("MEDFL_API_TOKEN", raising=False)
    return calls


def test_serve_binds_loopback_and_prints_the_generated_token_once(served, tmp_path: Path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path), "--port", "8123"]) == 0
    [call] = served
    assert (call["host"], call["port"]) == ("127.0.0.1", 8123)
    token = call["app"].state.token
    err = capsys.readouterr().err
    assert err.count(token) == 2
    assert f"medfl serve: API token (shown once): {token}\n" in err
    assert f"medfl serve: open http://127.0.0.1:8123/#token={token}\n" in err
    assert "warning" not in err
    assert (tmp_path / "medfl.db").is_file()


def test_serve_on_another_address_warns(served, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("MEDFL_API_TOKEN", "a-long-enough-random-token")
    assert main(["serve", "--data-dir", str(tmp_path), "--host", "0.0.0.0"]) == 0
    err = capsys.readouterr().err
    assert "medfl serve: open http://0.0.0.0:8000/ (token: MEDFL_API_TOKEN)" in err
    assert "warning: listening on 0.0.0.0, not only this machine" in err
    assert "a-long-enough-random-token" not in err


def test_serve_refuses_a_placeholder_token(served, tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("MEDFL_API_TOKEN", "changeme")
    assert main(["serve", "--data-dir", str(tmp_path)]) == 2
    assert served == []
    err = capsys.readouterr().err
    assert err.startswith("medfl: error: MEDFL_API_TOKEN is a placeholder")
    assert "Traceback" not in err
