"""``python -m medfl.k8s``: write the generated CRD into the chart (``make crds``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from medfl.k8s._crd import crd_yaml, write_crds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m medfl.k8s", description="Generate the FederatedExperiment CRD."
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--out",
        type=Path,
        default=Path("charts/medfl"),
        metavar="CHART_DIR",
        help="the chart to write the CRD template into (default: charts/medfl)",
    )
    where.add_argument("--stdout", action="store_true", help="print the plain CRD instead")
    args = parser.parse_args(argv)
    if args.stdout:
        sys.stdout.write(crd_yaml())
    else:
        print(f"wrote {write_crds(args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
