"""A logistic model that raises at a site whose second feature is huge: a site's own
code failing mid-run. Imported by path (model.importPath), also in Ray's workers."""

from __future__ import annotations

import torch
from torch import nn


class FlakyLogistic(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 1].abs() > 1e20).any()):
            raise RuntimeError("flaky site crashed")
        return super().forward(x)
