"""Federated GLM against statsmodels on the pooled rows: agreement and wall time.

The workload is examples/heart-disease/glm.yaml (logistic regression with a site
effect, four hospitals, 857 complete rows). Timed in this one process:

  (a) medfl, every site in this process: read and prepare each site's data, the
      shared vocabulary, the sites' guards, IRLS over the summed X'WX and X'Wz;
  (b) statsmodels: read and prepare the same data, pool the rows, build the same design
      matrix, ``sm.GLM(...).fit()``;
  (c) medfl over Flower's deployment engine (--backend local: a SuperLink and one
      SuperNode per site, TLS on), once; --no-deploy skips it.

Each of (a) and (b) is repeated and the median reported, after one untimed warm-up.
Target: the coefficients and standard errors agree to 1e-8.

Run: .venv/bin/python bench/glm.py [--repeats 5] [--no-deploy]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import statsmodels.api as sm

from medfl import load_experiment
from medfl.data import Preprocessor, prepare_site, summarize
from medfl.spec import Experiment
from medfl.stats import design_matrix, glm_dict
from medfl.stats._federated import InProcessStats, fit_glm
from medfl.stats._site import glm_formula

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "heart-disease" / "glm.yaml"
TOLERANCE = 1e-8


def _medfl(experiment: Experiment) -> tuple[np.ndarray, np.ndarray]:
    fit = fit_glm(experiment, InProcessStats(experiment))
    return fit.params_, fit.bse_


def _statsmodels(experiment: Experiment) -> tuple[np.ndarray, np.ndarray]:
    schema, formula = experiment.data_schema, glm_formula(experiment)
    tables = [prepare_site(site, schema) for site in experiment.sites]
    summaries = [summarize(t.site, t.features, t.features, schema) for t in tables]
    vocabulary = Preprocessor.from_summaries(schema, summaries).vocabulary
    blocks, outcomes = [], []
    for i, table in enumerate(tables):
        x, rows = design_matrix(table.features, formula, vocabulary)
        effect = np.zeros((len(x), len(tables) - 1))
        if i:
            effect[:, i - 1] = 1.0
        blocks.append(np.hstack([x, effect]))
        outcomes.append(table.y[rows].astype(float))
    fit = sm.GLM(np.concatenate(outcomes), np.vstack(blocks), family=sm.families.Binomial()).fit()
    return fit.params, fit.bse


def _time(call, experiment: Experiment, repeats: int):  # type: ignore[no-untyped-def]
    call(experiment)  # warm-up: imports, caches
    times, out = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        out = call(experiment)
        times.append(time.perf_counter() - began)
    return statistics.median(times), out


def _deployed(experiment: Experiment) -> tuple[float, dict]:
    import json

    from medfl.results import RunStore
    from medfl.runners import LocalBackend
    from medfl.runners._local import run_local
    from medfl.stats._federated import GLM_FILE

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "glm")
        store.create(experiment)
        began = time.perf_counter()
        run_local(experiment, LocalBackend(), store, False, None, job="glm")
        seconds = time.perf_counter() - began
        return seconds, json.loads((store.path / GLM_FILE).read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-deploy", action="store_true")
    args = parser.parse_args()
    experiment = load_experiment(EXAMPLE)
    ours_s, (params, bse) = _time(_medfl, experiment, args.repeats)
    theirs_s, (sm_params, sm_bse) = _time(_statsmodels, experiment, args.repeats)
    gap = max(np.abs(params - sm_params).max(), np.abs(bse - sm_bse).max())
    print(f"{EXAMPLE.name}: {len(params)} coefficients, median of {args.repeats}")
    print(f"(a) medfl, sites in this process   {ours_s:8.3f} s   ratio {ours_s / theirs_s:5.2f}")
    print(f"(b) statsmodels on the pooled rows {theirs_s:8.3f} s   ratio  1.00")
    if not args.no_deploy:
        deployed_s, fit = _deployed(experiment)
        same = fit == glm_dict(fit_glm(experiment, InProcessStats(experiment)))
        print(
            f"(c) medfl, --backend local         {deployed_s:8.3f} s   ratio "
            f"{deployed_s / theirs_s:5.1f}   (identical to (a): {same})"
        )
    print(f"largest difference in coefficients or standard errors: {gap:.1e}")
    ok = gap <= TOLERANCE
    print(f"{'PASS' if ok else 'FAIL'}: medfl equals statsmodels to {TOLERANCE:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
