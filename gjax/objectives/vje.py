"""VJE: the symmetric conditional ELBO objective (VJE paper Eq. 38, Alg. 4)."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.objectives.registry import Objective, register


def posterior_statistics(var: jax.Array) -> dict[str, jax.Array]:
  """Table 7's statistics of the posterior variance ``var [B, D]``.

  ``var_mean``: mean over latent dimensions of the batch-mean variance;
  ``var_cv``: its coefficient of variation across latent dimensions.
  """
  per_dim = jnp.mean(var, axis=0)
  mean = jnp.mean(per_dim)
  return {"var_mean": mean, "var_cv": jnp.std(per_dim) / mean}


def embedding_statistics(z: jax.Array) -> dict[str, jax.Array]:
  """Collapse monitor: per-dimension std of ``z [B, D]`` (min and mean)."""
  std = jnp.std(z, axis=0)
  return {"z_std_min": jnp.min(std), "z_std_mean": jnp.mean(std), "z_norm_mean": jnp.mean(gm.safe_norm(z))}


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
      z_1, z_2, outputs["mu_1"], outputs["var_1"], outputs["mu_2"], outputs["var_2"],
      noise_1, noise_2,
      nu=hparams.nu, beta=hparams.beta,
      use_directional=hparams.use_directional, use_radial=hparams.use_radial, use_kl=hparams.use_kl,
      kl_convention=hparams.kl_convention, free_bits=hparams.free_bits,
  )
  var = jnp.concatenate([outputs["var_1"], outputs["var_2"]])
  mu = jnp.concatenate([outputs["mu_1"], outputs["mu_2"]])
  z = jnp.concatenate([z_1, z_2])
  # Collapse diagnostics on the global batch (both views): active units,
  # spread of mu against the posterior std, pairwise cosines, dead z channels.
  diagnostics = gm.posterior_diagnostics(jax.lax.stop_gradient(mu), jax.lax.stop_gradient(var),
                                         jax.lax.stop_gradient(z))
  metrics = {"loss": loss, **parts, **posterior_statistics(var), **embedding_statistics(z), **diagnostics}
  return loss, metrics


VJE = register(Objective(
    name="vje",
    loss_fn=vje_loss,
    head="vje_inference",
    description="Variational Joint Embedding: Student-t directional + radial likelihood, diagonal posterior, KL to N(0, I).",
))
