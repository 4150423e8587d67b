"""Every test here must leave no deployment process behind (checked through /proc)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.deploy.flower_processes import deployment_processes


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    assert deployment_processes() == [], "deployment processes running before the test"
    yield
    assert deployment_processes() == [], "the deployment left processes behind"
