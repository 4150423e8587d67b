"""The chart's operator Deployment runs what this package provides, with the settings
it reads."""

from __future__ import annotations

from pathlib import Path

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
