"""VICReg (Bardes et al., 2022): invariance, variance and covariance terms on
the expander outputs of both views, with the original weights 25 / 25 / 1.

``inv = mean_b ||z_1 - z_2||² / d``; per view ``var = mean_k relu(γ -
sqrt(Var z_k + 1e-4))`` and ``cov = Σ_{k≠l} C_kl² / d`` (``C`` the batch
covariance), summed over the two views."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from gjax.objectives.registry import Objective, register, require
from gjax.objectives.shared_terms import collapse_metrics


def variance_term(z: jax.Array, std_target: float) -> jax.Array:
  return jnp.mean(jax.nn.relu(std_target - jnp.sqrt(jnp.var(z, axis=0) + 1e-4)))


def covariance_term(z: jax.Array) -> jax.Array:
  n, d = z.shape
  centred = z - jnp.mean(z, axis=0)
  cov = centred.T @ centred / (n - 1)
  return (jnp.sum(jnp.square(cov)) - jnp.sum(jnp.square(jnp.diagonal(cov)))) / d


def vicreg_loss(outputs: Mapping[str, jax.Array], rng: jax.Array, hparams: Any):
  del rng
  z_1, z_2 = outputs["z_1"], outputs["z_2"]
  invariance = jnp.mean(jnp.square(z_1 - z_2))
  variance = variance_term(z_1, hparams.std_target) + variance_term(z_2, hparams.std_target)
  covariance = covariance_term(z_1) + covariance_term(z_2)
  loss = (
    hparams.invariance_weight * invariance + hparams.variance_weight * variance + hparams.covariance_weight * covariance
  )
  return loss, {
    "loss": loss,
    "invariance": invariance,
    "variance": variance,
    "covariance": covariance,
    **collapse_metrics(outputs),
  }


def check_vicreg_settings(v, config) -> None:
  del config
  for field in ("invariance_weight", "variance_weight", "covariance_weight"):
    require(v[field] >= 0, f"vicreg.{field}", v[field], "must be >= 0")
  require(v.std_target > 0, "vicreg.std_target", v.std_target, "must be > 0")


VICREG = register(
  Objective(
    "vicreg",
    vicreg_loss,
    head="none",
    description="VICReg: invariance + variance + covariance regularisation.",
    defaults={"invariance_weight": 25.0, "variance_weight": 25.0, "covariance_weight": 1.0, "std_target": 1.0},
    check=check_vicreg_settings,
  )
)
