"""The images, checked statically (no Docker engine here): pinned bases, non-root
users, pinned torch, and the commands the chart and the operator rely on."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "images" / "Dockerfile"
STAGES = ("runtime", "operator")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for word, rest in _instructions():
        if word == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            stages[current] = []
        elif current:
            stages[current].append((word, rest))
    return stages


def test_the_base_image_is_pinned_to_a_version() -> None:
    args = dict(
        rest.split("=", 1) for word, rest in _instructions() if word == "ARG" and "=" in rest
    )
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    froms = [rest for word, rest in _instructions() if word == "FROM"]
    assert froms[0] == "${PYTHON_IMAGE} AS base"
    assert all(f.split()[0] in ("${PYTHON_IMAGE}", "base") for f in froms)
    assert not any("latest" in f for f in froms)


@pytest.mark.parametrize("stage", STAGES)
def test_each_image_runs_as_a_non_root_user(stage: str) -> None:
    users = [rest for word, rest in _stages()[stage] if word == "USER"]
    assert users and users[-1] == "10001:10001"


def test_the_runtime_installs_with_the_projects_pins_and_torch_from_the_cpu_index() -> None:
    runtime = _stages()["runtime"]
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    assert "pip install" in runs and "-c constraints.txt" in runs
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
    args = [rest for word, rest in runtime if word == "ARG"]
    assert args == ["TORCH_INDEX=https://download.pytorch.org/whl/cpu"]
    assert ("ENTRYPOINT", '["medfl"]') in runtime


def test_the_operator_image_runs_the_command_the_chart_gives() -> None:
    operator = _stages()["operator"]
    runs = " ".join(rest for word, rest in operator if word == "RUN")
    assert "pip install --no-deps ." in runs and "torch" not in runs
    (cmd,) = [rest for word, rest in operator if word == "CMD"]
    command = shlex.split(cmd.strip("[]").replace('", "', " ").replace('"', ""))
    chart = (ROOT / "charts" / "medfl" / "templates" / "deployment.yaml").read_text()
    assert command[:3] == ["kopf", "run", "--module=medfl_operator"]
    for word in command[:4]:
        assert f"- {word}" in chart


def test_telemetry_is_off_and_the_context_leaves_out_environments_and_runs() -> None:
    base = _stages()["base"]
    env = " ".join(rest for word, rest in base if word == "ENV")
    assert "FLWR_TELEMETRY_ENABLED=0" in env
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".git", "runs", "tests"} <= set(ignored)
