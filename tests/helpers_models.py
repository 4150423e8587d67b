"""Models the tests load by import path (``model: {type: custom, importPath: ...}``)."""

from __future__ import annotations

import torch
from torch import nn


class PoisonedLogistic(nn.Module):
    """Logistic regression whose output is NaN for rows whose last input feature is set,
    so a site holding such rows computes a non-finite loss and update."""

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        return torch.where(x[:, -1:] > 0.5, torch.full_like(out, float("nan")), out)


class TinyMlp(nn.Module):
    """A user's own module with a keyword argument."""

    def __init__(self, in_features: int, out_features: int = 1, width: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class NotAModule:
    def __init__(self, in_features: int, out_features: int = 1) -> None:
        self.in_features = in_features
