"""A user's own model with a BatchNorm layer inside a submodule (for the privacy tests)."""

from __future__ import annotations

import torch
from torch import nn


class NormedNet(nn.Module):
    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, 4), nn.BatchNorm1d(4), nn.ReLU())
        self.head = nn.Linear(4, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
