#!/usr/bin/env bash
# The batched engine on a CUDA GPU: one short run (about a minute), for a machine with a
# GPU and this repository's .venv built with a CUDA torch. Not run on the 2-core CPU
# development machines (no GPU there); bench/README.md says so, with no figure.
#   (1) 1000 virtual sites on cuda, against the sequential torch loop and numpy (CPU)
#   (2) a million virtual sites (shards of 32), 1 % sampled per round, 5 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
"$PY" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))'
date -u
"$PY" bench/scale.py --device cuda --only 1
"$PY" bench/scale.py --device cuda --only 2 --big 1000000 --fraction 0.01
