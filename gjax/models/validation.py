"""The checks of ``config.model``: the encoder, its stem and width, the compute
dtype, the heads' sizes and the projector, each error naming the field (called
by :func:`gjax.train.config.validate_config` before anything is built)."""

from __future__ import annotations

from gjax.config_checks import require
from gjax.models.encoders import ENCODERS
from gjax.models.heads import ACTIVATIONS
from gjax.models.resnet import ARCHS, STEMS

#: ``config.model.compute_dtype``: the dtype of the network's activations ("bfloat16" on accelerators).
COMPUTE_DTYPES = ("float32", "bfloat16")


def validate_model_config(m) -> None:
  """Checks ``config.model`` (``m``); raises ``ValueError`` naming the field."""
  require(m.encoder in ENCODERS, "model.encoder", m.encoder, f"must be one of {list(ENCODERS)}")
  require(
    m.encoder in ARCHS or m.width_multiplier == 1.0,
    "model.width_multiplier",
    m.width_multiplier,
    f"must be 1.0 for the ViT {m.encoder!r} (a ResNet setting)",
  )
  require(m.stem in STEMS, "model.stem", m.stem, f"must be one of {STEMS}")
  require(m.width_multiplier > 0, "model.width_multiplier", m.width_multiplier, "must be > 0")
  require(m.compute_dtype in COMPUTE_DTYPES, "model.compute_dtype", m.compute_dtype, f"must be one of {COMPUTE_DTYPES}")
  require(m.activation in ACTIVATIONS, "model.activation", m.activation, f"must be one of {sorted(ACTIVATIONS)}")
  require(
    m.projector_norm in ("layer", "batch", "none"),
    "model.projector_norm",
    m.projector_norm,
    "must be 'layer', 'batch' or 'none'",
  )
  for field in ("bottleneck", "projector_hidden", "projector_dim", "projector_layers"):
    require(m[field] >= 1, f"model.{field}", m[field], "must be >= 1")
