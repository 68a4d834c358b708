"""Encoders (ResNet-18/34/50) and heads (VJE inference network, projectors)."""

from gjax.models.heads import (ACTIVATIONS, MLP, NORMS, Projector,
                               VJEInferenceNetwork, get_activation)
from gjax.models.joint import HEADS, TwoViewModel, build_two_view_model
from gjax.models.resnet import (ARCHS, STEMS, BasicBlock, Bottleneck, ResNet,
                                build_encoder, embedding_dim)

__all__ = [
    "ACTIVATIONS", "ARCHS", "MLP", "NORMS", "STEMS", "BasicBlock", "Bottleneck",
    "Projector", "ResNet", "VJEInferenceNetwork", "build_encoder",
    "embedding_dim", "get_activation", "HEADS", "TwoViewModel", "build_two_view_model",
]
