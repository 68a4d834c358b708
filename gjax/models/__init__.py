"""Encoders (ResNet-18/34/50), projectors and heads (registered by kind)."""

from gjax.models.heads import (ACTIVATIONS, MLP, NORMS, Projector,
                               GaussianPosteriorNetwork, get_activation)
from gjax.models.joint import Head, TwoViewModel, build_two_view_model, register_head, registered_heads
from gjax.models.resnet import (ARCHS, STEMS, BasicBlock, Bottleneck, ResNet,
                                build_encoder, embedding_dim)
from gjax.models.validation import COMPUTE_DTYPES, validate_model_config

__all__ = [
    "ACTIVATIONS", "ARCHS", "MLP", "NORMS", "STEMS", "BasicBlock", "Bottleneck",
    "Projector", "ResNet", "GaussianPosteriorNetwork", "build_encoder",
    "embedding_dim", "get_activation", "Head", "TwoViewModel", "build_two_view_model",
    "register_head", "registered_heads", "COMPUTE_DTYPES", "validate_model_config",
]
