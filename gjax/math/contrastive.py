"""InfoNCE and its derivation as a degenerate GMJE (design doc, "Contrastive
learning as the degenerate limit")."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks
from gjax.math._numerics import normalize
from gjax.math.mixture import mixture_component_log_probs


def _check_pairs(z_c, z_t, temperature):
  _checks.check_ndim("z_c", z_c, 2)
  if z_t.shape != z_c.shape:
    raise ValueError(f"z_c {z_c.shape} and z_t {z_t.shape} must have the same shape")
  return _checks.check_positive_scalar("temperature", temperature)


def info_nce(z_c: jax.Array, z_t: jax.Array, temperature: float) -> jax.Array:
  """InfoNCE over the batch: ``-mean_i log softmax_j(ẑ_c^i · ẑ_t^j / τ)_{j=i}``.

  Embeddings are L2-normalised; the positives are the diagonal pairs and the
  other targets of the batch are the negatives.
  """
  temperature = _check_pairs(z_c, z_t, temperature)
  logits = normalize(z_c) @ normalize(z_t).T / temperature
  return -jnp.mean(jnp.diagonal(jax.nn.log_softmax(logits, axis=-1)))


def gmje_degenerate_info_nce(z_c: jax.Array, z_t: jax.Array, temperature: float) -> jax.Array:
  """GMJE in its contrastive limit: one isotropic component per target.

  Components ``N(ẑ_t^j, τ I)`` with equal weights; for unit vectors
  ``log N(ẑ_c; ẑ_t^j, τI) = ẑ_c·ẑ_t^j / τ + const``, so the negative log
  responsibility of the true pair's component is InfoNCE with temperature τ.
  Computed with the generic mixture code, not the dot-product shortcut.
  """
  temperature = _check_pairs(z_c, z_t, temperature)
  n = z_c.shape[0]
  comp = mixture_component_log_probs(
    normalize(z_c),
    jnp.zeros((n,), z_c.dtype),
    normalize(z_t),
    jnp.full((n,), temperature, z_c.dtype),
    covariance_type="isotropic",
  )
  log_resp = jax.nn.log_softmax(comp, axis=-1)
  return -jnp.mean(jnp.diagonal(log_resp))


def nt_xent(z_1: jax.Array, z_2: jax.Array, temperature: float) -> jax.Array:
  """SimCLR's NT-Xent (Chen et al., 2020): each of the ``2B`` embeddings is an
  anchor whose positive is its other view and whose negatives are the other
  ``2B - 2`` embeddings of both views; ``-mean log softmax`` of the positive,
  cosine similarities over ``τ``."""
  temperature = _check_pairs(z_1, z_2, temperature)
  z = normalize(jnp.concatenate([z_1, z_2]))
  n = z_1.shape[0]
  logits = z @ z.T / temperature
  logits = jnp.where(jnp.eye(2 * n, dtype=bool), -jnp.inf, logits)  # no self-pairs
  positive = jnp.concatenate([jnp.arange(n, 2 * n), jnp.arange(n)])
  log_prob = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.mean(jnp.take_along_axis(log_prob, positive[:, None], axis=-1))
