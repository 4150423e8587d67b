#!/usr/bin/env bash
# Every benchmark (`make bench`); exits non-zero when any target is missed.
# Extra arguments go to none; run a script by hand for its options (--help).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
status=0

bench() {  # script, what it measures
    echo "== bench/$1: $2"
    "$PY" "bench/$1" || status=1
    echo
}

bench flamby_heart.py "accuracy in FLamby's Fed-Heart-Disease setting"
bench speed.py "fast engine vs Flower's engine and hand-written loops"
bench deploy.py "Flower's deployment engine (--backend local) vs the fast engine"
bench transfer.py "the transfer-learning example over seeds, against from scratch"
bench glm.py "the federated GLM against statsmodels on the pooled rows"
bench tuning.py "medfl tune: trials per minute, Ray Tune + Optuna against plain Optuna"
bench privacy.py "accuracy under local DP-SGD at ε = 1, 3, 8 against no DP (FLamby heart, the DP example)"
bench scale.py "the batched engine: 1000 and 100 000 virtual sites, label skew against IID"
bench api.py "the web service: a run through the API against the direct run; live event delay"
bench secure.py "secure aggregation (SecAgg+) on Flower's simulation engine against plain updates"
exit "$status"
