"""Layers a machine keeps: what the spec and results import, in a fresh interpreter."""

import subprocess
import sys


def test_importing_spec_and_results_loads_neither_torch_nor_flwr():
    code = (
        "import sys, medfl, medfl.spec, medfl.results, medfl.errors;"
        "print(sorted(m for m in ('torch', 'flwr', 'ray') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
