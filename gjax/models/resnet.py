"""ResNet-18/34/50 encoders f_theta (Flax Linen), without a classifier.

VJE paper, Section 5.1: "All experiments use a ResNet backbone (He et al.,
2016) ... ResNet-50 [for ImageNet-1K] ... ResNet-18 [for CIFAR/STL]. For
CIFAR-10 and CIFAR-100, the architecture is adapted to 32x32 inputs by
modifying the first convolutional layer to 3x3 with stride 1 and removing the
initial max-pooling layer." Both stems are available via ``stem``.

The layout follows torchvision (v1.5: the stride of a Bottleneck sits on its
3x3 conv) with explicit torch-style padding, so parameter counts match
torchvision minus the ``fc`` layer. The encoder returns the global-average-pooled
embedding ``z`` of shape ``[B, D]`` (Section 3, ``f_theta: X -> R^D``).

BatchNorm has no ``axis_name``: the trainer ``jax.jit``s over a device mesh with
the batch sharded, so the batch statistics are already global.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

#: Base stage widths of every ResNet, before ``width_multiplier``.
BASE_WIDTHS = (64, 128, 256, 512)
#: name -> (blocks per stage, block kind).
ARCHS = {
  "resnet10": ((1, 1, 1, 1), "basic"),  # one block per stage: fast-compiling smoke and test runs
  "resnet18": ((2, 2, 2, 2), "basic"),
  "resnet34": ((3, 4, 6, 3), "basic"),
  "resnet50": ((3, 4, 6, 3), "bottleneck"),
}
STEMS = ("imagenet", "cifar")
_EXPANSION = {"basic": 1, "bottleneck": 4}

# torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu").
conv_kernel_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _check(value: str, allowed: Sequence[str], what: str) -> None:
  if value not in allowed:
    raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def scaled_width(base: int, width_multiplier: float) -> int:
  """``base * width_multiplier`` rounded to an int, at least 1."""
  return max(1, int(round(base * width_multiplier)))


def embedding_dim(name: str, width_multiplier: float = 1.0) -> int:
  """Dimension D of the embedding of ``build_encoder(name, ..., width_multiplier)``."""
  _check(name, tuple(ARCHS), "encoder name")
  kind = ARCHS[name][1]
  return scaled_width(BASE_WIDTHS[-1], width_multiplier) * _EXPANSION[kind]


class _ConvBN(nn.Module):
  """Shared conv (no bias) and BatchNorm constructors for the blocks."""

  dtype: Dtype = jnp.float32

  def conv(self, features, kernel, strides=1, name=None):
    pad = kernel // 2  # torch-style symmetric padding
    return nn.Conv(
      features,
      (kernel, kernel),
      strides=(strides, strides),
      padding=((pad, pad), (pad, pad)),
      use_bias=False,
      kernel_init=conv_kernel_init,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name=name,
    )

  def norm(self, train: bool, zero_scale: bool = False, name=None):
    return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      scale_init=(nn.initializers.zeros if zero_scale else nn.initializers.ones),
      name=name,
    )

  def shortcut(self, x, out_features, strides, train):
    """Identity, or 1x1 conv + BN when the shape changes (torchvision)."""
    if strides == 1 and x.shape[-1] == out_features:
      return x
    x = self.conv(out_features, 1, strides, name="downsample_conv")(x)
    return self.norm(train, name="downsample_bn")(x)


class BasicBlock(_ConvBN):
  """Two 3x3 convs (ResNet-18/34); the last BN scale starts at zero."""

  features: int = 64
  strides: int = 1
  expansion = 1

  @nn.compact
  def __call__(self, x, train: bool):
    y = self.conv(self.features, 3, self.strides, name="conv1")(x)
    y = nn.relu(self.norm(train, name="bn1")(y))
    y = self.conv(self.features, 3, name="conv2")(y)
    y = self.norm(train, zero_scale=True, name="bn2")(y)
    return nn.relu(y + self.shortcut(x, self.features, self.strides, train))


class Bottleneck(_ConvBN):
  """1x1 -> 3x3 (strided) -> 1x1 x4 (ResNet-50); the last BN scale starts at zero."""

  features: int = 64
  strides: int = 1
  expansion = 4

  @nn.compact
  def __call__(self, x, train: bool):
    out = self.features * self.expansion
    y = self.conv(self.features, 1, name="conv1")(x)
    y = nn.relu(self.norm(train, name="bn1")(y))
    y = self.conv(self.features, 3, self.strides, name="conv2")(y)
    y = nn.relu(self.norm(train, name="bn2")(y))
    y = self.conv(out, 1, name="conv3")(y)
    y = self.norm(train, zero_scale=True, name="bn3")(y)
    return nn.relu(y + self.shortcut(x, out, self.strides, train))


class ResNet(_ConvBN):
  """ResNet encoder: NHWC float images -> float32 embedding ``[B, D]``.

  Attributes:
    stage_sizes: residual blocks per stage.
    block: ``"basic"`` (18/34) or ``"bottleneck"`` (50).
    stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"``
      (3x3/1 conv, no max-pool; VJE Section 5.1).
    width_multiplier: scales the base widths 64, 128, 256, 512.
    dtype: compute dtype (e.g. bfloat16); parameters stay float32.
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"
  stem: str = "imagenet"
  width_multiplier: float = 1.0

  @nn.compact
  def __call__(self, x, *, train: bool):
    _check(self.stem, STEMS, "stem")
    _check(self.block, tuple(_EXPANSION), "block")
    block_cls = BasicBlock if self.block == "basic" else Bottleneck
    widths = [scaled_width(w, self.width_multiplier) for w in BASE_WIDTHS]

    x = jnp.asarray(x, self.dtype)
    if self.stem == "imagenet":
      x = self.conv(widths[0], 7, 2, name="conv1")(x)
    else:
      x = self.conv(widths[0], 3, 1, name="conv1")(x)
    x = nn.relu(self.norm(train, name="bn1")(x))
    if self.stem == "imagenet":
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

    for stage, (num_blocks, width) in enumerate(zip(self.stage_sizes, widths)):
      for i in range(num_blocks):
        strides = 2 if stage > 0 and i == 0 else 1
        x = block_cls(features=width, strides=strides, dtype=self.dtype, name=f"layer{stage + 1}_{i}")(x, train)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))


def build_encoder(
  name: str, stem: str = "imagenet", width_multiplier: float = 1.0, dtype: Dtype = jnp.float32
) -> ResNet:
  """``ResNet`` for ``name`` in {"resnet10", "resnet18", "resnet34", "resnet50"}.

  Raises ``ValueError`` naming the bad ``name`` or ``stem`` and the allowed ones.
  """
  _check(name, tuple(ARCHS), "encoder name")
  _check(stem, STEMS, "stem")
  if not width_multiplier > 0:
    raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
  stage_sizes, block = ARCHS[name]
  return ResNet(stage_sizes=stage_sizes, block=block, stem=stem, width_multiplier=float(width_multiplier), dtype=dtype)
