"""VJE: the symmetric conditional ELBO objective (VJE paper Eq. 38, Alg. 4)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import embedding_statistics


def vje_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  """VJE loss from the two views' encoder and inference-network outputs.

  ``outputs``: ``z_1, z_2`` (encoder embeddings, ``[B, D]``) and, from the
  inference network, ``mu_1, var_1, mu_2, var_2`` (``var`` already
  ``softplus + 1e-6``). ``hparams``: ``nu, beta, use_directional, use_radial,
  use_kl, kl_convention, free_bits``. Draws one reparameterised sample per view (Appendix A).
  """
  z_1, z_2 = outputs["z_1"], outputs["z_2"]
  key_1, key_2 = jax.random.split(rng)
  noise_1 = jax.random.normal(key_1, z_1.shape, z_1.dtype)
  noise_2 = jax.random.normal(key_2, z_2.shape, z_2.dtype)
  loss, parts = gm.vje_symmetric_loss(
    z_1,
    z_2,
    outputs["mu_1"],
    outputs["var_1"],
    outputs["mu_2"],
    outputs["var_2"],
    noise_1,
    noise_2,
    nu=hparams.nu,
    beta=hparams.beta,
    use_directional=hparams.use_directional,
    use_radial=hparams.use_radial,
    use_kl=hparams.use_kl,
    kl_convention=hparams.kl_convention,
    free_bits=hparams.free_bits,
  )
  var = jnp.concatenate([outputs["var_1"], outputs["var_2"]])
  mu = jnp.concatenate([outputs["mu_1"], outputs["mu_2"]])
  z = jnp.concatenate([z_1, z_2])
  # Collapse diagnostics on the global batch (both views): active units,
  # spread of mu against the posterior std, pairwise cosines, dead z channels.
  diagnostics = gm.posterior_diagnostics(
    jax.lax.stop_gradient(mu), jax.lax.stop_gradient(var), jax.lax.stop_gradient(z)
  )
  metrics = {"loss": loss, **parts, **gm.posterior_statistics(var), **embedding_statistics(z), **diagnostics}
  return loss, metrics


def check_vje_settings(v, config) -> None:
  del config
  require(v.nu > 0, "vje.nu", v.nu, "must be > 0 (math.inf for the Gaussian limit)")
  require(v.beta >= 0 and math.isfinite(v.beta), "vje.beta", v.beta, "must be finite and >= 0")
  require(
    v.kl_convention in gm.KL_CONVENTIONS, "vje.kl_convention", v.kl_convention, f"must be one of {gm.KL_CONVENTIONS}"
  )
  require(v.free_bits >= 0, "vje.free_bits", v.free_bits, "must be >= 0 (0 = off)")
  require(
    v.use_directional or v.use_radial or v.use_kl,
    "vje.use_*",
    False,
    "at least one of use_directional, use_radial, use_kl must be True",
  )


VJE = register(
  Objective(
    name="vje",
    loss_fn=vje_loss,
    head="diagonal_posterior",
    description=(
      "Variational Joint Embedding: Student-t directional + radial likelihood, diagonal posterior, KL to N(0, I)."
    ),
    defaults={
      "nu": 3.0,  # Student-t degrees of freedom; math.inf = Gaussian limit
      "beta": 1.0,
      "use_directional": True,
      "use_radial": True,
      "use_kl": True,
      # "mean": beta * (KL_1 + KL_2) / 2 (Eq. 38, Algorithm 4); "sum": beta * (KL_1 + KL_2) (Eq. 9-10).
      "kl_convention": "mean",
      # > 0: floor each dimension's batch-mean KL at this many nats (free bits; not in the paper).
      "free_bits": 0.0,
    },
    check=check_vje_settings,
    may_be_infinite=("nu",),
  )
)
