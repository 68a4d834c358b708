"""Global density heads of the GJE / GMJE family (design doc ``gje-formulation.md``).

A density head holds learnable global parameters of a (mixture of) Gaussian(s)
over the joint embedding ``u = [z_c; z_t]`` and returns them in the mixture
format of :mod:`gjax.math.mixture` (``logits [K]``, ``means [K, 2d]`` and the
covariance parameter of ``covariance_type``). It ignores the batch: these are
prototypes, not batch estimates, which is what keeps them out of the
Mahalanobis Trace Trap (design doc, "Remedies": prototype GMJE; K = 1 is GJE).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

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
  def __call__(self) -> dict[str, jax.Array]:
    if self.num_components < 1:
      raise ValueError(f"num_components must be >= 1, got {self.num_components}")
    check_covariance_type(self.covariance_type)
    k, d = self.num_components, self.dim
    softplus_inverse_one = jnp.log(jnp.expm1(1.0))
    logits = self.param("logits", nn.initializers.zeros, (k,))
    means = self.param("means", nn.initializers.normal(0.1), (k, d))
    if self.covariance_type == "full":
      raw = self.param("scale_raw", lambda _, shape: jnp.broadcast_to(
          softplus_inverse_one * jnp.eye(d), shape), (k, d, d))
      cov = scale_tril_from_params(raw, self.min_scale)
    else:
      shape = (k, d) if self.covariance_type == "diag" else (k,)
      raw = self.param("var_raw", nn.initializers.constant(softplus_inverse_one), shape)
      cov = jax.nn.softplus(raw) + max(self.min_scale ** 2, EPS)
    return {"density_logits": logits, "density_means": means, "density_cov": cov}
