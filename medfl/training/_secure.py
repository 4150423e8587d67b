"""Secure aggregation at both ends, free of Flower: what a site puts under the masks,
and what the server makes of the sum it unmasks.

A site masks its change to the global model (not the model itself: changes are small,
so the quantisation's range fits them), weighted by its training examples; with central
DP it first clips the change to the round's norm, weighs 1, and adds one value: 1 when
the change needed no clipping, which adaptive clipping counts. The server learns the
weighted mean of those vectors and, in plain, each site's weight and training metadata
(loss, steps, ε) -- never one site's vector.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from medfl.privacy import PrivacySpent
from medfl.privacy._central import clipped
from medfl.spec._models import SecureAggregation
from medfl.training._local import LocalUpdate, Params


@dataclass(frozen=True)
class SecureRequest:
    """What the server asks of each site in a secure round, besides the model."""

    server_round: int
    max_weight: float  # the largest weight a site may give (its share is weight / this)
    clipping_norm: float | None = None  # central DP: each site clips its change to this

    def to_config(self) -> dict[str, int | float]:
        config: dict[str, int | float] = {
            "server-round": self.server_round,
            "max-weight": float(self.max_weight),
        }
        if self.clipping_norm is not None:
            config["clipping-norm"] = float(self.clipping_norm)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SecureRequest:
        norm = config.get("clipping-norm")
        return cls(
            int(config["server-round"]),
            float(config["max-weight"]),
            None if norm is None else float(norm),
        )


@dataclass
class Contribution:
    """What one site masks: its vector, its weight, and how many of the vector's values
    (once weighted) fell outside the clipping range and were clipped by SecAgg+."""

    vector: Params
    weight: int
    clipped_values: int = 0
    problem: str | None = None  # why the site sent nothing: its own check of its update


def update_problem(update: LocalUpdate, current: Params) -> str | None:
    """The check of an update, made by the server on a plain one and by the site itself
    on one it masks: a site's word that it is fine is not enough for the server."""
    if update.problem is not None:
        return update.problem
    shapes = [np.shape(p) for p in update.params]
    if shapes != [np.shape(p) for p in current]:
        return "update does not match the model's shapes"
    if not all(np.isfinite(p).all() for p in update.params):
        return "update is not finite"
    if update.num_examples < 1:
        return "update reports no training examples"
    return None


def indicator(secure: SecureAggregation) -> float:
    """Central DP's "needed no clipping" value: inside the range, however small it is."""
    return secure.clipping_range / 2


def max_weight(largest: int, central: bool) -> float:
    """The weight a site's share is taken of: 1 with central DP (each site counts once),
    else the largest site's training rows rounded up to a power of two, so the figure
    every site is sent does not give that site's size away (it costs at most one bit)."""
    return 1.0 if central else float(2 ** math.ceil(math.log2(max(largest, 1))))


def nothing(current: Params, request: SecureRequest) -> Contribution:
    """A site with no usable update still answers, so the others' masks cancel: zeros
    of weight 0 add nothing to the sum."""
    vector: Params = [np.zeros(np.shape(c)) for c in current]
    if request.clipping_norm is not None:
        vector.append(np.zeros(1))
    return Contribution(vector, 0)


def contribution(
    update: LocalUpdate, current: Params, request: SecureRequest, secure: SecureAggregation
) -> Contribution:
    """This site's vector and weight for the round (nothing when its update fails the check)."""
    problem = update_problem(update, current)
    if problem is not None:
        return dataclasses.replace(nothing(current, request), problem=problem)
    pairs = zip(update.params, current, strict=True)
    change = [u.astype(np.float64) - c.astype(np.float64) for u, c in pairs]
    weight = update.num_examples
    if request.clipping_norm is not None:
        change, was_clipped = clipped(change, request.clipping_norm)
        change = [*change, np.array([0.0 if was_clipped else indicator(secure)])]
        weight = 1
    if not 0 < weight <= request.max_weight:  # beyond it the masked sum would wrap
        raise ValueError(
            f"its weight {weight} is outside (0, {request.max_weight:g}], the largest the "
            "server allows this round"
        )
    share = weight / request.max_weight
    outside = sum(int(np.sum(np.abs(c * share) > secure.clipping_range)) for c in change)
    return Contribution(change, weight, outside)


def metadata(site: str, update: LocalUpdate, part: Contribution) -> dict[str, str]:
    """What travels in plain beside the masked vector: the site's name and the update's
    facts the server reports per site (never its values)."""
    fields: dict[str, Any] = {
        "num-examples": update.num_examples,
        "loss": float(update.loss),
        "steps": update.steps,
        "weight": part.weight,
        "clipped-values": part.clipped_values,
    }
    if part.problem is not None:
        fields["problem"] = part.problem
    if update.privacy is not None:
        fields["privacy"] = update.privacy.to_dict()
    return {"medfl-site": site, "medfl-update": json.dumps(fields)}


def update_from(text: str) -> tuple[LocalUpdate, int, int]:
    """A site's plain metadata as a LocalUpdate without values, its weight, and its
    clipped values."""
    fields = json.loads(text)
    spent = fields.get("privacy")
    update = LocalUpdate(
        params=[],
        num_examples=int(fields["num-examples"]),
        loss=float(fields["loss"]),
        steps=int(fields["steps"]),
        problem=fields.get("problem"),
        privacy=None if spent is None else PrivacySpent.from_dict(spent),
    )
    return update, int(fields["weight"]), int(fields["clipped-values"])


@dataclass
class SecureSum:
    """One secure round, as the server has it: the weighted mean of the vectors the
    sites masked, the weights summed, and each site's plain answer (a LocalUpdate
    without values, or why it has none)."""

    mean: Params
    weight: int
    answers: dict[str, LocalUpdate | Exception]
    clipped_values: dict[str, int]

    def check(self, current: Params, server_round: int, bit: bool) -> str | None:
        """Why the unmasked mean cannot be used, if it cannot."""
        shapes = [np.shape(c) for c in current] + ([(1,)] if bit else [])
        if [np.shape(m) for m in self.mean] != shapes:
            return f"round {server_round}: the unmasked sum does not match the model's shapes"
        if not all(np.isfinite(m).all() for m in self.mean):
            return f"round {server_round}: the unmasked sum is not finite"
        return None

    def average(self, current: Params) -> Params:
        """The sites' example-weighted mean model: the global one plus the mean change."""
        pairs = zip(current, self.mean, strict=True)
        return [(c.astype(np.float64) + m).astype(c.dtype) for c, m in pairs]

    def clipped_total(self, secure: SecureAggregation) -> tuple[Params, int]:
        """Central DP: the sum of the clipped changes, and how many needed no clipping."""
        total = [m * self.weight for m in self.mean[:-1]]
        return total, round(float(self.mean[-1][0]) / indicator(secure) * self.weight)


def shares(secure: SecureAggregation, sites: int) -> tuple[int, int]:
    """How many shares each site's secrets are split into, and how many rebuild them,
    as Flower's SecAggPlusWorkflow derives them from the fractions for ``sites`` sites."""
    count = round(secure.share_fraction * sites)
    if count < sites and count % 2 == 0:
        count += 1  # Flower wants an odd neighbourhood: a site and pairs around it
    if count <= 2:
        count = sites
    return count, max(round(secure.reconstruction_threshold * count), 2)


def plan(secure: SecureAggregation, sites: int) -> dict[str, Any]:
    """What medfl validate shows: the protocol's figures for this federation."""
    count, threshold = shares(secure, sites)
    return {
        "sites": sites,
        "shares": count,
        "threshold": threshold,
        "clippingRange": secure.clipping_range,
        "quantizationStep": secure.step,
    }


def describe(secure: SecureAggregation, sites: int, central: bool) -> dict[str, Any]:
    """result.json's secureAggregation: the settings and what they protect."""
    mean = (
        "mean of the clipped changes (each site counts once)"
        if central
        else "example-weighted mean of the changes"
    )
    weights = (
        "each site weighs 1"
        if central
        else "a site's weight is its training rows over the largest site's, rounded up to "
        "a power of two"
    )
    count, threshold = shares(secure, sites)
    return {
        "protocol": "SecAgg+ (Bell et al., 2020) as Flower's SecAggPlusWorkflow and secaggplus_mod",
        "masks": "SHAKE-256 of each whole seed, at both ends (Flower 1.42's own generator "
        "folds seeds to 32 bits: flwrlabs/flower#7522); every site must run this medfl",
        "shareFraction": secure.share_fraction,
        "reconstructionThreshold": secure.reconstruction_threshold,
        "clippingRange": secure.clipping_range,
        "quantizationBits": secure.quantization_bits,
        "quantizationStep": secure.step,
        "sites": sites,
        "shares": count,
        "threshold": threshold,
        "protects": [
            f"each site's change to the model in every round: the server unmasks only the "
            f"{mean} of at least 2 sites",
        ],
        "doesNotProtect": [
            "the mean itself, and so the global model (add privacy.mode central or local for that)",
            "what travels beside the masked vector, in plain: each site's example count, "
            "training loss, steps, ε spent, how many of its values the range clipped, why "
            "it sent nothing (its own check, or its error), and its validation and test "
            "metrics; every site is also sent the weights' bound (the largest site's "
            "training rows rounded up to a power of two)",
            "with 2 sites, each can work out the other's change from the global models it "
            "receives (the mean minus its own)",
            "repeated rounds: from a fixed training.seed a site's update repeats exactly, so "
            "a server that runs the same round over two different sets of sites (say, a "
            "resumed round a site no longer joins) can subtract the two sums",
            "against the server together with enough sites to reach the reconstruction "
            "threshold of a site's neighbours",
            "against a server that does not follow the protocol (it is the honest-but-"
            "curious model; the sites trust the server to forward their keys)",
        ],
        "precision": f"each value is quantised with stochastic rounding to quantizationStep "
        f"over the site's share ({weights}); values beyond clippingRange are clipped, "
        "counted in clippedValues",
    }
