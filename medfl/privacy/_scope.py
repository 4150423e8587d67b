"""What the reported ε covers, and what it does not: said in result.json and the report."""

from __future__ import annotations

from typing import Any

SCOPE: dict[str, list[str] | str] = {
    "unit": "one training row (a patient's record) at one site: sample-level DP, per site",
    "covers": [
        "every model update a site sends: each is the result of DP-SGD steps (per-example "
        "gradients clipped to maxGradNorm, Gaussian noise added) on that site's training "
        "split, and ε is that site's accountant's figure over all its steps in this "
        "experiment (all rounds; a resumed run's accountant goes on from the steps taken "
        "before it was cut)",
        "the final model and everything computed from it, as post-processing of those updates",
    ],
    "doesNotCover": [
        "the standardisation and imputation aggregates (sums, sums of squares, counts) and "
        "the category levels with their counts, sent once before round 1 without noise "
        "(under the site's disclosure limits only)",
        "the example counts sent with every update and the site's data report (rows, "
        "outcome classes, missing values)",
        "metrics: every round's validation metrics and the final test metrics with their "
        "confusion counts, computed on rows that are not training rows but sent without noise",
        "fine-tuning (personalization), which trains without noise; only its test metrics leave",
        "baselines, computed in the simulating process with the same DP settings; they "
        "spend nothing from the sites' ledgers (simulation only)",
        "the test and validation rows themselves: DP-SGD protects the training rows only",
        "ε across experiments: a site's ledger adds up each experiment's ε (basic "
        "composition); one experiment's figure is for that experiment alone",
    ],
    "assumptions": [
        "with reproducibleNoise (the default) the noise and the batch draws derive from "
        "training.seed: the guarantee then holds only against parties who do not know the "
        "seed; a deployment whose server knows the spec sets privacy.reproducibleNoise: false",
        "with poissonSampling off the accountant's figure assumes Poisson sampling all the "
        "same (the common approximation, as in Opacus)",
        "a site's updates are seen by the server one by one: there is no secure aggregation",
    ],
}


# With privacy.secureAggregation, the lines that say the server sees each update.
_SECURED = {
    "a site's updates are seen by the server one by one: there is no secure aggregation": (
        "secure aggregation (SecAgg+): the server sees only the sum of the sites' updates "
        "each round, not one site's; the ε above does not rely on it"
    ),
    "the server itself: it sees each site's update before the noise (there is no "
    "secure aggregation)": (
        "the server itself, in part: secure aggregation (SecAgg+) hides each site's clipped "
        "change, but the server sees their exact sum before it adds the noise (the noise is "
        "the server's to add, not the sites')"
    ),
}


def secured(scope: dict[str, Any]) -> dict[str, Any]:
    """``scope`` as it reads when the updates travel under SecAgg+'s masks."""
    return {
        key: [_SECURED.get(line, line) for line in value] if isinstance(value, list) else value
        for key, value in scope.items()
    }
