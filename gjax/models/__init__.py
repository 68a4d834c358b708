"""Encoders (ResNet-18/34/50, ViT-Ti/S/B/L), projectors and heads (registered by kind)."""

from gjax.models import masked_prediction  # noqa: F401  (registers the masked_prediction head)
from gjax.models.encoders import ENCODERS, build_encoder, embedding_dim
from gjax.models.heads import ACTIVATIONS, MLP, NORMS, GaussianPosteriorNetwork, Projector, get_activation
from gjax.models.joint import Head, TwoViewModel, build_two_view_model, register_head, registered_heads
from gjax.models.resnet import ARCHS, STEMS, BasicBlock, Bottleneck, ResNet
from gjax.models.validation import COMPUTE_DTYPES, validate_model_config
from gjax.models.vit import VIT_ENCODERS, VIT_SIZES, VisionTransformer

__all__ = [
  "ACTIVATIONS",
  "ARCHS",
  "MLP",
  "NORMS",
  "STEMS",
  "BasicBlock",
  "Bottleneck",
  "Projector",
  "ResNet",
  "GaussianPosteriorNetwork",
  "build_encoder",
  "embedding_dim",
  "get_activation",
  "Head",
  "TwoViewModel",
  "build_two_view_model",
  "register_head",
  "registered_heads",
  "COMPUTE_DTYPES",
  "validate_model_config",
  "ENCODERS",
  "VIT_ENCODERS",
  "VIT_SIZES",
  "VisionTransformer",
]
