#!/usr/bin/env bash
# The transfer-learning example, end to end (see README.md here):
#   1. Cleveland and Hungary train a model federatedly  -> source-run/ (next to this file)
#   2. Switzerland and VA Long Beach start from it, train, fine-tune per site, and
#      compare with the same federation trained from scratch -> runs/heart-transfer-*/
# Usage: bash examples/transfer-learning/run.sh [medfl run options for step 2, e.g. --out DIR]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
medfl="${MEDFL:-medfl}"

rm -rf "$here/source-run"  # this example's own step-1 output, rebuilt each time
$medfl run "$here/source.yaml" --out "$here/source-run"
$medfl run "$here/transfer.yaml" --site-policy "switzerland=$here/public-data-policy.yaml" "$@"
