"""The chart's operator Deployment runs what this package provides, with the settings
it reads; and what the handlers tell kopf when the API server refuses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kopf
import pytest
from kubernetes.client.exceptions import ApiException
from medfl_operator._handlers import kopf_error
from medfl_operator._settings import CONFIG_ENV, load_config

from medfl.k8s._config import CONFIG_FILE

DEPLOYMENT = Path(__file__).resolve().parents[2] / "charts/medfl/templates/deployment.yaml"


def test_the_charts_command_runs_this_package_with_kopf_standalone() -> None:
    text = DEPLOYMENT.read_text()
    assert "- kopf\n" in text and "- run\n" in text
    assert "- --module=medfl_operator\n" in text
    assert "- --standalone\n" in text


def test_the_charts_config_file_is_where_the_operator_reads_it(tmp_path: Path) -> None:
    text = DEPLOYMENT.read_text()
    assert f"- name: {CONFIG_ENV}\n              value: /etc/medfl/{CONFIG_FILE}" in text
    path = tmp_path / CONFIG_FILE
    path.write_text("results: {claimName: medfl-results}\nruntime: {image: r/runtime:1}\n")
    config = load_config({CONFIG_ENV: str(path)})
    assert config.results is not None and config.results.claim_name == "medfl-results"
    assert config.runtime.image == "r/runtime:1"
    assert load_config({}).results is None


@pytest.mark.parametrize(
    ("status", "permanent"), [(422, True), (400, True), (403, False), (409, False), (503, False)]
)
def test_api_refusals_are_retried_unless_retrying_cannot_help(status: int, permanent: bool) -> None:
    error = kopf_error(ApiException(status=status, reason="Refused"))
    assert isinstance(error, kopf.PermanentError) == permanent
    assert isinstance(error, kopf.TemporaryError) != permanent
    assert f"the API server answered {status} Refused" in str(error)


def test_the_operator_process_loads_neither_torch_nor_flwr() -> None:
    """The contract in make lint checks direct imports; this, everything it pulls in."""
    code = (
        "import sys, medfl_operator, medfl_operator._job;"
        "print(sorted(m for m in ('torch', 'flwr', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
