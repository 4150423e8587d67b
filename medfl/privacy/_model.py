"""Which layers of a model DP-SGD (Opacus) cannot train, by name."""

from __future__ import annotations

from torch import nn

from medfl.errors import SpecError


def unsupported_layers(model: nn.Module) -> list[str]:
    """Each layer Opacus's validator refuses, as 'name (Type)'."""
    from opacus.validators import ModuleValidator

    bad = []
    for name, module in model.named_modules():
        leaf = next(module.children(), None) is None
        if name and leaf and ModuleValidator.validate(module, strict=False):
            bad.append(f"{name} ({type(module).__name__})")
    return bad


def check_private(model: nn.Module, repaired: bool) -> None:
    """Refuse, before any site trains, a model DP-SGD cannot train, naming its layers."""
    bad = unsupported_layers(model)
    if not bad:
        return
    hint = "" if repaired else "; privacy.repairModel: true replaces BatchNorm layers by GroupNorm"
    raise SpecError(
        [("model", f"privacy.mode 'local': DP-SGD cannot train layer(s) {', '.join(bad)}{hint}")]
    )
