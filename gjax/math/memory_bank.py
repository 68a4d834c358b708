"""The SMC memory bank: weighted particles of past embeddings as a kernel
mixture (design doc ``gje-formulation.md``, "Remedies": SMC memory bank).

``M`` particles ``k_m`` (past target embeddings, unit norm) with normalised
log-weights define ``p(k) = Σ_m w_m K(k; k_m)``. Each training step

1. **reweights** the particles by how well they explain the current contexts,
   ``log w_m += α · log mean_i exp(q_i · k_m / τ)`` (α = 0: no reweighting);
2. **resamples** them (systematic resampling) when the bank is full and its
   effective sample size ``1 / Σ w_m²`` falls below ``threshold · M``, after
   which every weight is ``1 / M``;
3. **moves** them: ``k_m ← normalize(k_m + σ ε)`` (σ = 0: no move), so
   duplicated particles spread again;
4. **inserts** the new batch FIFO over the oldest slots, each new particle with
   the mean weight ``1 / n_filled``.

With α = 0, σ = 0 and no resampling the weights stay equal and the bank is a
MoCo queue (He et al., 2020): :func:`bank_info_nce` is then exactly InfoNCE
with the queue as negatives, the contrastive limit of GMJE (design doc,
"Contrastive learning as the degenerate limit").
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gjax.math import _checks
from gjax.math._numerics import normalize


class ParticleBank(NamedTuple):
  """``particles [M, D]``, ``log_weights [M]`` (normalised over the filled
  slots, -inf on empty ones), ``filled [M]`` and the FIFO ``cursor``."""

  particles: jax.Array
  log_weights: jax.Array
  filled: jax.Array
  cursor: jax.Array


class SMCParams(NamedTuple):
  reweight_strength: float = 0.0  # α
  temperature: float = 0.1  # τ of the kernel exp(q·k / τ)
  resample_threshold: float = 0.5  # resample when ESS < threshold · M
  move_std: float = 0.0  # σ


#: The degenerate bank: equal weights, FIFO insertion, no resampling or move (MoCo's queue).
FIFO_QUEUE = SMCParams(reweight_strength=0.0, resample_threshold=0.0, move_std=0.0)


def bank_init(size: int, dim: int, dtype=jnp.float32) -> ParticleBank:
  if size < 1 or dim < 1:
    raise ValueError(f"memory bank size and dim must be >= 1, got size={size}, dim={dim}")
  return ParticleBank(
    particles=jnp.zeros((size, dim), dtype),
    log_weights=jnp.full((size,), -jnp.inf, dtype),
    filled=jnp.zeros((size,), jnp.bool_),
    cursor=jnp.zeros((), jnp.int32),
  )


def _normalise(log_weights, filled):
  log_weights = jnp.where(filled, log_weights, -jnp.inf)
  total = jax.nn.logsumexp(jnp.where(filled, log_weights, -jnp.inf))
  return jnp.where(filled, log_weights - jnp.where(jnp.any(filled), total, 0.0), -jnp.inf)


def effective_sample_size(bank: ParticleBank) -> jax.Array:
  """``1 / Σ_m w_m²`` over the filled particles (0 for an empty bank)."""
  w = jnp.where(bank.filled, jnp.exp(bank.log_weights), 0.0)
  return jnp.where(jnp.any(bank.filled), 1.0 / jnp.maximum(jnp.sum(jnp.square(w)), 1e-30), 0.0)


def bank_insert(bank: ParticleBank, new: jax.Array) -> ParticleBank:
  """Writes ``new [B, D]`` over the ``B`` oldest slots (FIFO), each with weight
  ``1 / n_filled``, the others scaled so the weights still sum to one."""
  _checks.check_ndim("new", new, 2)
  size = bank.particles.shape[0]
  if new.shape[0] > size:
    raise ValueError(f"memory bank of {size} particles is smaller than the batch of {new.shape[0]}")
  if new.shape[1] != bank.particles.shape[1]:
    raise ValueError(f"new particles have dimension {new.shape[1]}, the bank {bank.particles.shape[1]}")
  index = (bank.cursor + jnp.arange(new.shape[0])) % size
  filled = bank.filled.at[index].set(True)
  n_filled = jnp.sum(filled)
  # Old particles keep their relative weights on the mass the new ones leave.
  old = bank.filled.at[index].set(False)
  old_log = _normalise(bank.log_weights, old) + jnp.log(jnp.sum(old) / n_filled)
  log_weights = jnp.where(old, old_log, -jnp.inf).at[index].set(-jnp.log(n_filled.astype(new.dtype)))
  return ParticleBank(
    particles=bank.particles.at[index].set(new.astype(bank.particles.dtype)),
    log_weights=_normalise(log_weights, filled),
    filled=filled,
    cursor=(bank.cursor + new.shape[0]) % size,
  )


def bank_reweight(bank: ParticleBank, log_likelihood: jax.Array, strength: float) -> ParticleBank:
  """``log w_m += strength · log_likelihood[m]``, renormalised."""
  return bank._replace(log_weights=_normalise(bank.log_weights + strength * log_likelihood, bank.filled))


def systematic_resample(key: jax.Array, bank: ParticleBank) -> ParticleBank:
  """Systematic resampling of a full bank: ``M`` ordered draws at
  ``(u + m) / M`` through the weights' CDF; afterwards every weight is 1/M."""
  size = bank.particles.shape[0]
  positions = (jax.random.uniform(key, (), bank.particles.dtype) + jnp.arange(size)) / size
  cdf = jnp.cumsum(jnp.exp(bank.log_weights))
  index = jnp.minimum(jnp.searchsorted(cdf, positions * cdf[-1]), size - 1)
  return bank._replace(
    particles=bank.particles[index], log_weights=jnp.full((size,), -jnp.log(float(size)), bank.log_weights.dtype)
  )


def bank_move(key: jax.Array, bank: ParticleBank, std: float) -> ParticleBank:
  """Gaussian jitter of every filled particle, back onto the unit sphere."""
  moved = normalize(bank.particles + std * jax.random.normal(key, bank.particles.shape, bank.particles.dtype))
  return bank._replace(particles=jnp.where(bank.filled[:, None], moved, bank.particles))


def kernel_log_likelihood(queries: jax.Array, bank: ParticleBank, temperature: float) -> jax.Array:
  """``log mean_i exp(q_i · k_m / τ)`` per particle ``[M]``."""
  scores = queries @ bank.particles.T / temperature
  return jax.nn.logsumexp(scores, axis=0) - jnp.log(queries.shape[0])


def smc_bank_step(
  key: jax.Array, bank: ParticleBank, queries: jax.Array, new: jax.Array, params: SMCParams = FIFO_QUEUE
) -> tuple[ParticleBank, dict[str, jax.Array]]:
  """One step (reweight, resample if needed, move, insert); returns the bank
  and ``{"ess", "resampled"}`` (the ESS before resampling)."""
  if params.temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {params.temperature}")
  if params.reweight_strength < 0 or params.move_std < 0 or not 0 <= params.resample_threshold <= 1:
    raise ValueError(f"bad SMC parameters {params}: strength and move_std >= 0, threshold in [0, 1]")
  resample_key, move_key = jax.random.split(key)
  if params.reweight_strength > 0:
    bank = bank_reweight(bank, kernel_log_likelihood(queries, bank, params.temperature), params.reweight_strength)
  ess = effective_sample_size(bank)
  resampled = jnp.all(bank.filled) & (ess < params.resample_threshold * bank.particles.shape[0])
  if params.resample_threshold > 0:
    candidate = systematic_resample(resample_key, bank)
    bank = jax.tree_util.tree_map(lambda a, b: jnp.where(resampled, a, b), candidate, bank)
  if params.move_std > 0:
    bank = bank_move(move_key, bank, params.move_std)
  return bank_insert(bank, new), {"ess": ess, "resampled": resampled.astype(jnp.float32)}


def bank_info_nce(queries: jax.Array, positives: jax.Array, bank: ParticleBank, temperature: float) -> jax.Array:
  """Per-query ``-log`` responsibility of the positive among the positive and
  the bank's particles, each component weighted by its particle weight (the
  positive by the mean weight): ``[B]``.

  With equal weights this is InfoNCE with the bank as negatives (MoCo).
  """
  _checks.check_ndim("queries", queries, 2)
  if positives.shape != queries.shape:
    raise ValueError(f"positives {positives.shape} and queries {queries.shape} must have the same shape")
  n_filled = jnp.maximum(jnp.sum(bank.filled), 1).astype(queries.dtype)
  positive = jnp.sum(queries * positives, axis=-1) / temperature - jnp.log(n_filled)
  negatives = queries @ bank.particles.T / temperature + jnp.where(bank.filled, bank.log_weights, -jnp.inf)
  logits = jnp.concatenate([positive[:, None], negatives], axis=-1)
  return -jax.nn.log_softmax(logits, axis=-1)[:, 0]
