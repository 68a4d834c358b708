"""Every encoder ``config.model.encoder`` may name: the ResNets
(:mod:`gjax.models.resnet`) and the Vision Transformers (:mod:`gjax.models.vit`).

Both return a float32 embedding ``[B, D]`` from NHWC images, so every method's
head sits on either. ``stem`` and ``width_multiplier`` are ResNet settings: a
ViT is built from its name alone, and a ``width_multiplier`` other than 1 is
refused for it (its sizes are the named ones).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from gjax.models import resnet, vit

#: Every encoder name, ResNets then ViTs.
ENCODERS = tuple(resnet.ARCHS) + vit.VIT_ENCODERS


def _check_name(name: str) -> None:
  if name not in ENCODERS:
    raise ValueError(f"unknown encoder name {name!r}; allowed: {', '.join(ENCODERS)}")


def _check_vit_width(name: str, width_multiplier: float) -> None:
  if width_multiplier != 1.0:
    raise ValueError(
      f"width_multiplier={width_multiplier!r} is a ResNet setting; the ViT {name!r} takes 1.0 "
      f"(pick another size among {', '.join(vit.VIT_ENCODERS)})"
    )


def is_vit(name: str) -> bool:
  return name in vit.VIT_ENCODERS


def build_encoder(name: str, stem: str = "imagenet", width_multiplier: float = 1.0, dtype: Any = jnp.float32):
  """The encoder ``name``: a :class:`~gjax.models.resnet.ResNet` or a
  :class:`~gjax.models.vit.VisionTransformer`; ``ValueError`` naming a bad name."""
  _check_name(name)
  if is_vit(name):
    _check_vit_width(name, width_multiplier)
    return vit.build_vit(name, dtype=dtype)
  return resnet.build_encoder(name, stem, width_multiplier, dtype=dtype)


def embedding_dim(name: str, width_multiplier: float = 1.0) -> int:
  """Dimension D of ``build_encoder(name, ..., width_multiplier)``'s embedding."""
  _check_name(name)
  if is_vit(name):
    _check_vit_width(name, width_multiplier)
    return vit.vit_embedding_dim(name)
  return resnet.embedding_dim(name, width_multiplier)
