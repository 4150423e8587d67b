#!/usr/bin/env bash
# Every benchmark (`make bench`); exits non-zero when any target is missed.
# Extra arguments go to neither; run a script by hand for its options (--help).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
status=0
echo "== bench/flamby_heart.py: accuracy in FLamby's Fed-Heart-Disease setting"
"$PY" bench/flamby_heart.py || status=1
echo
echo "== bench/speed.py: fast engine vs Flower's engine and hand-written loops"
"$PY" bench/speed.py || status=1
echo
echo "== bench/deploy.py: Flower's deployment engine (--backend local) vs the fast engine"
"$PY" bench/deploy.py || status=1
echo
echo "== bench/transfer.py: the transfer-learning example over seeds, against from scratch"
"$PY" bench/transfer.py || status=1
echo
echo "== bench/glm.py: the federated GLM against statsmodels on the pooled rows"
"$PY" bench/glm.py || status=1
exit "$status"
