"""Models: the zoo, pretrained weights, and which layers are frozen, kept local or sent."""

from medfl.models._parts import ModelParts, model_parts
from medfl.models._pretrained import LoadReport, Weights, load_into, read_weights
from medfl.models._zoo import build_model, initial_model, replace_batch_norm

__all__ = [
    "LoadReport",
    "ModelParts",
    "Weights",
    "build_model",
    "initial_model",
    "load_into",
    "model_parts",
    "read_weights",
    "replace_batch_norm",
]
