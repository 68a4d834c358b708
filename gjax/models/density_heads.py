"""Global density heads of the GJE / GMJE family (design doc ``gje-formulation.md``).

A density head holds learnable global parameters of a (mixture of) Gaussian(s)
over the joint embedding ``u = [z_c; z_t]`` and returns them in the mixture
format of :mod:`gjax.math.mixture` (``logits [K]``, ``means [K, 2d]`` and the
covariance parameter of ``covariance_type``). It ignores the batch: these are
prototypes, not batch estimates, which is what keeps them out of the
Mahalanobis Trace Trap (design doc, "Remedies": prototype GMJE; K = 1 is GJE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gjax import math as gm
from gjax.math import EPS, scale_tril_from_params
from gjax.math._checks import check_covariance_type


class MixtureDensity(nn.Module):
  """``K`` learnable Gaussian components over ``dim`` dimensions.

  Full covariances are ``L Lᵀ`` with ``L`` from :func:`scale_tril_from_params`
  (softplus diagonal plus ``min_scale``); diagonal / isotropic variances are
  ``softplus(raw) + min_scale²``. Means start at small random values so the
  components can separate; covariances start near the identity.
  """

  dim: int
  num_components: int = 1
  covariance_type: str = "full"
  min_scale: float = 1e-3

  @nn.compact
  def __call__(self, outputs: Mapping[str, Any] | None = None, *, train: bool = False) -> dict[str, jax.Array]:
    del outputs, train  # global prototypes: they do not look at the batch
    if self.num_components < 1:
      raise ValueError(f"num_components must be >= 1, got {self.num_components}")
    check_covariance_type(self.covariance_type)
    k, d = self.num_components, self.dim
    softplus_inverse_one = jnp.log(jnp.expm1(1.0))
    logits = self.param("logits", nn.initializers.zeros, (k,))
    means = self.param("means", nn.initializers.normal(0.1), (k, d))
    if self.covariance_type == "full":
      raw = self.param(
        "scale_raw", lambda _, shape: jnp.broadcast_to(softplus_inverse_one * jnp.eye(d), shape), (k, d, d)
      )
      cov = scale_tril_from_params(raw, self.min_scale)
    else:
      shape = (k, d) if self.covariance_type == "diag" else (k,)
      raw = self.param("var_raw", nn.initializers.constant(softplus_inverse_one), shape)
      cov = jax.nn.softplus(raw) + max(self.min_scale**2, EPS)
    return _as_output(gm.MixtureParams(logits, means, cov))


def _as_output(params: gm.MixtureParams) -> dict[str, jax.Array]:
  return {"density_logits": params.logits, "density_means": params.means, "density_cov": params.cov}


class OnlineEMMixtureDensity(nn.Module):
  """GMJE-EM: K global components fitted by stepwise EM on stop-gradient joint
  embeddings (design doc, "Remedies": "trained ... by mini-batch/online EM on
  stop-gradient embeddings").

  The running sufficient statistics and the current parameters live in the
  mutable ``density_em`` collection, like BatchNorm's running averages: in
  training, each step E-steps the batch's ``u = [z_c; z_t]`` (gradient
  stopped), mixes the statistics with step size ``ρ`` and M-steps
  (:func:`gjax.math.online_em_step`); the loss then scores ``u`` under the
  updated, constant parameters, so its gradient reaches only the encoder. The
  first training batch initialises the means at K of its rows and every
  covariance at the batch's per-dimension variance.
  """

  dim: int
  num_components: int = 8
  covariance_type: str = "full"
  symmetric: bool = True
  step_size: float = 0.05
  cov_floor: float = 1e-4

  @nn.compact
  def __call__(self, outputs: Mapping[str, Any] | None = None, *, train: bool = False) -> dict[str, jax.Array]:
    if self.num_components < 1:
      raise ValueError(f"num_components must be >= 1, got {self.num_components}")
    check_covariance_type(self.covariance_type)
    k, d = self.num_components, self.dim
    cov_shape = {"full": (k, d, d), "diag": (k, d), "isotropic": (k,)}[self.covariance_type]
    second_shape = (k, d, d) if self.covariance_type == "full" else (k, d)
    initial_cov = jnp.broadcast_to(jnp.eye(d), cov_shape) if self.covariance_type == "full" else jnp.ones(cov_shape)
    zeros = lambda shape: lambda: jnp.zeros(shape, jnp.float32)
    initialized = self.variable("density_em", "initialized", lambda: jnp.zeros((), jnp.bool_))
    logits = self.variable("density_em", "logits", zeros((k,)))
    means = self.variable("density_em", "means", zeros((k, d)))
    cov = self.variable("density_em", "cov", lambda: initial_cov.astype(jnp.float32))
    weight = self.variable("density_em", "stat_weight", zeros((k,)))
    first = self.variable("density_em", "stat_first", zeros((k, d)))
    second = self.variable("density_em", "stat_second", zeros(second_shape))
    params = gm.MixtureParams(logits.value, means.value, cov.value)
    if train and outputs is not None and not self.is_initializing():
      u = gm.joint_embeddings(outputs["z_1"], outputs["z_2"], self.symmetric)
      u = jax.lax.stop_gradient(u).astype(jnp.float32)
      if u.shape[-1] != d:
        raise ValueError(f"joint embeddings have dimension {u.shape[-1]}, the density expects {d}")
      picked = u[jnp.linspace(0, u.shape[0] - 1, k).astype(jnp.int32)]
      var = jnp.var(u, axis=0) + self.cov_floor
      if self.covariance_type == "full":
        fresh_cov = jnp.broadcast_to(jnp.diag(jnp.sqrt(var)), cov_shape)
      elif self.covariance_type == "diag":
        fresh_cov = jnp.broadcast_to(var, cov_shape)
      else:
        fresh_cov = jnp.full(cov_shape, jnp.mean(var))
      fresh = gm.MixtureParams(jnp.zeros((k,)), picked, fresh_cov)
      start = jax.tree_util.tree_map(lambda a, b: jnp.where(initialized.value, a, b), params, fresh)
      stats = gm.MixtureStatistics(weight.value, first.value, second.value)
      # On the first batch a step of size 1 makes the statistics that batch's own.
      step_size = jnp.where(initialized.value, self.step_size, 1.0)
      stats, params, _ = gm.online_em_step(u, stats, start, self.covariance_type, step_size, self.cov_floor)
      for variable, value in (
        (logits, params.logits),
        (means, params.means),
        (cov, params.cov),
        (weight, stats.weight),
        (first, stats.first),
        (second, stats.second),
      ):
        variable.value = value
      initialized.value = jnp.ones((), jnp.bool_)
    return _as_output(jax.tree_util.tree_map(jax.lax.stop_gradient, params))


class GNGDensity(nn.Module):
  """GMJE-GNG: a Growing Neural Gas over stop-gradient joint embeddings whose
  active nodes are the components of an isotropic mixture (design doc,
  "Remedies": GMJE-GNG; :mod:`gjax.math.gng`).

  The graph lives in the mutable ``gng`` collection. In training, the first
  batch places the two start nodes at two of its rows; every batch then feeds
  its rows ``u = [z_c; z_t]`` to the graph as signals, in order, and the
  mixture's variance is the batch's quantisation error per dimension (plus
  ``min_variance``). Weights follow the nodes' decayed win counts.
  """

  dim: int
  capacity: int = 64
  symmetric: bool = True
  params: gm.GNGParams = gm.GNGParams()
  min_variance: float = 1e-4

  @nn.compact
  def __call__(self, outputs: Mapping[str, Any] | None = None, *, train: bool = False) -> dict[str, jax.Array]:
    empty = gm.gng_init(jnp.zeros((2, self.dim), jnp.float32), self.capacity)
    graph = {name: self.variable("gng", name, lambda v=value: v) for name, value in empty._asdict().items()}
    initialized = self.variable("gng", "initialized", lambda: jnp.zeros((), jnp.bool_))
    variance = self.variable("gng", "variance", lambda: jnp.ones((), jnp.float32))
    state = gm.GNGState(**{name: v.value for name, v in graph.items()})
    if train and outputs is not None and not self.is_initializing():
      u = gm.joint_embeddings(outputs["z_1"], outputs["z_2"], self.symmetric)
      u = jax.lax.stop_gradient(u).astype(jnp.float32)
      if u.shape[-1] != self.dim:
        raise ValueError(f"joint embeddings have dimension {u.shape[-1]}, the GNG expects {self.dim}")
      fresh = gm.gng_init(u[jnp.array([0, u.shape[0] - 1])], self.capacity)
      state = jax.tree_util.tree_map(lambda a, b: jnp.where(initialized.value, a, b), state, fresh)
      state = gm.gng_update(state, u, self.params)
      for name, value in state._asdict().items():
        graph[name].value = value
      initialized.value = jnp.ones((), jnp.bool_)
      variance.value = gm.gng_quantization_error(state, u) / self.dim + self.min_variance
    mixture = gm.MixtureParams(*gm.gng_mixture(state, variance.value))
    return _as_output(jax.tree_util.tree_map(jax.lax.stop_gradient, mixture)) | {
      "gng_active": jnp.sum(state.active).astype(jnp.float32)
    }


class MemoryBank(nn.Module):
  """The SMC memory bank of past target embeddings (design doc, "Remedies":
  SMC memory bank; :mod:`gjax.math.memory_bank`), in the ``memory_bank``
  collection.

  In training it returns the bank as it was before this batch (constants), then
  runs one SMC step: reweight by the batch's contexts ``normalize(z_1)``,
  resample if the ESS is low, move, and insert the batch's targets
  ``normalize(z_2)`` (``normalize(target_z_2)``, the momentum target's keys,
  when the method trains with one). The step's randomness is the fixed ``seed`` folded with
  the bank's own step count, so a resumed run repeats it.
  """

  size: int
  dim: int
  params: gm.SMCParams = gm.FIFO_QUEUE
  seed: int = 0

  @nn.compact
  def __call__(self, outputs: Mapping[str, Any] | None = None, *, train: bool = False) -> dict[str, jax.Array]:
    empty = gm.bank_init(self.size, self.dim)
    bank_vars = {name: self.variable("memory_bank", name, lambda v=value: v) for name, value in empty._asdict().items()}
    steps = self.variable("memory_bank", "steps", lambda: jnp.zeros((), jnp.int32))
    bank = gm.ParticleBank(**{name: v.value for name, v in bank_vars.items()})
    result = {"bank_particles": bank.particles, "bank_log_weights": bank.log_weights, "bank_filled": bank.filled}
    if train and outputs is not None and not self.is_initializing():
      # The targets are the momentum target network's keys when the method has one.
      queries, targets = (
        jax.lax.stop_gradient(gm.normalize(outputs.get(name, outputs[f"z_{i}"]).astype(jnp.float32)))
        for i, name in ((1, "z_1"), (2, "target_z_2"))
      )
      key = jax.random.fold_in(jax.random.PRNGKey(self.seed), steps.value)
      bank, diagnostics = gm.smc_bank_step(key, bank, queries, targets, self.params)
      for name, value in bank._asdict().items():
        bank_vars[name].value = value
      steps.value = steps.value + 1
      result |= {"bank_ess": diagnostics["ess"], "bank_resampled": diagnostics["resampled"]}
    return result
