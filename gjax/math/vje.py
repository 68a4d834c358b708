"""The VJE symmetric conditional objective (VJE paper Eq. 37-38, Algorithm 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gjax.math import _checks
from gjax.math._numerics import EPS
from gjax.math.gaussian import reparameterize_diag
from gjax.math.kl import free_bits_kl, kl_diag_gaussian_standard_normal
from gjax.math.student_t import student_t_directional_parts, student_t_radial_nll

#: How ``beta`` weighs the two views' KL terms (the paper has both).
#: ``"mean"``: Eq. 38 / Algorithm 4, ``beta · ½ (KL_1 + KL_2)``;
#: ``"sum"``: Eq. 9-10, ``beta · (KL_1 + KL_2)`` beside the same averaged NLL.
KL_CONVENTIONS = ("mean", "sum")


def vje_symmetric_loss(
  z_1: jax.Array,
  z_2: jax.Array,
  mu_1: jax.Array,
  var_1: jax.Array,
  mu_2: jax.Array,
  var_2: jax.Array,
  noise_1: jax.Array,
  noise_2: jax.Array,
  *,
  nu: float,
  beta: float = 1.0,
  use_directional: bool = True,
  use_radial: bool = True,
  use_kl: bool = True,
  eps: float = EPS,
  radial_scale: float = 1.0,
  kl_convention: str = "mean",
  free_bits: float = 0.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Negative symmetric conditional ELBO, Eq. 38 (Algorithm 4), batch-averaged.

  For ``(i, j) ∈ {(1, 2), (2, 1)}``: one reparameterised sample
  ``s_i = μ_i + σ_i ⊙ ε_i`` (Eq. 33, ``ε_i = noise_i``) scores the observed
  embedding of the other view, ``sg(z_j)``, under the directional (Eq. 24) and
  radial (Eq. 29) Student-t likelihoods, with the posterior variance ``σ²_i``
  shared as the directional scale (Section 4.2):

  ``L = ½ Σ_(i,j) [ℓ_dir(ẑ_j, ŝ_i; σ²_i) + ℓ_rad(||z_j|| - ||s_i||)]
  + β ½ Σ_i KL(q_i || N(0, I))``.

  ``var_i`` is the inference network's variance (``softplus + 1e-6`` floor, see
  :func:`gjax.math.softplus_variance`). The toggles drop a term from the loss
  (the ablations of Tables 6-7); every part is still returned for monitoring.

  ``kl_convention`` (:data:`KL_CONVENTIONS`): ``"mean"`` weighs the KL as
  Eq. 38 / Algorithm 4 (above, the default); ``"sum"`` as Eq. 9-10,
  ``beta · (KL_1 + KL_2)``, i.e. twice the weight for the same ``beta``.
  ``free_bits > 0`` (off by default; not in the paper) floors each
  dimension's batch-mean KL at that many nats (:func:`free_bits_kl`) in the
  loss; the logged ``kl`` stays the plain KL.

  Returns ``(loss, parts)`` with parts ``directional`` (and its
  ``directional_kernel`` fit part and ``directional_log_det`` = ½ Σ log σ²
  part), ``radial``, ``kl`` (unweighted, batch means of the symmetric
  averages), ``kl_loss`` (what the loss adds: ``beta`` times the convention's
  weighting of the floored KL) and ``nll``.
  """
  _checks.check_last_dims(
    z_1=z_1, z_2=z_2, mu_1=mu_1, var_1=var_1, mu_2=mu_2, var_2=var_2, noise_1=noise_1, noise_2=noise_2
  )
  for name, a in (
    ("z_2", z_2),
    ("mu_1", mu_1),
    ("var_1", var_1),
    ("mu_2", mu_2),
    ("var_2", var_2),
    ("noise_1", noise_1),
    ("noise_2", noise_2),
  ):
    if a.shape != z_1.shape:
      raise ValueError(f"{name} has shape {a.shape}, expected z_1's shape {z_1.shape}")
  _checks.check_nu(nu)
  if not beta >= 0:
    raise ValueError(f"beta must be >= 0, got {beta!r}")
  if kl_convention not in KL_CONVENTIONS:
    raise ValueError(f"kl_convention must be one of {KL_CONVENTIONS}, got {kl_convention!r}")
  if not free_bits >= 0:
    raise ValueError(f"free_bits must be >= 0, got {free_bits!r}")
  if not (use_directional or use_radial or use_kl):
    raise ValueError("at least one of use_directional, use_radial, use_kl must be True")

  s_1 = reparameterize_diag(mu_1, var_1, noise_1)
  s_2 = reparameterize_diag(mu_2, var_2, noise_2)
  # Fixed-observation semantics (Section 4.4, Appendix B.3): the target view
  # is detached in every likelihood term.
  obs_1, obs_2 = jax.lax.stop_gradient(z_1), jax.lax.stop_gradient(z_2)
  kernel_1, log_det_1 = student_t_directional_parts(obs_2, s_1, var_1, nu, eps)
  kernel_2, log_det_2 = student_t_directional_parts(obs_1, s_2, var_2, nu, eps)
  kernel, log_det = 0.5 * (kernel_1 + kernel_2), 0.5 * (log_det_1 + log_det_2)
  radial = 0.5 * (
    student_t_radial_nll(obs_2, s_1, nu, radial_scale) + student_t_radial_nll(obs_1, s_2, nu, radial_scale)
  )
  kl = 0.5 * (kl_diag_gaussian_standard_normal(mu_1, var_1) + kl_diag_gaussian_standard_normal(mu_2, var_2))
  kl_floored = (
    jnp.mean(kl)
    if free_bits == 0
    else 0.5 * (free_bits_kl(mu_1, var_1, free_bits) + free_bits_kl(mu_2, var_2, free_bits))
  )
  parts = {
    "directional": jnp.mean(kernel + log_det),
    "directional_kernel": jnp.mean(kernel),
    "directional_log_det": jnp.mean(log_det),
    "radial": jnp.mean(radial),
    "kl": jnp.mean(kl),
    "kl_loss": beta * (2.0 if kl_convention == "sum" else 1.0) * kl_floored,
  }
  enabled = [parts[name] for name, on in (("directional", use_directional), ("radial", use_radial)) if on]
  parts["nll"] = sum(enabled) if enabled else jnp.zeros((), z_1.dtype)
  loss = parts["nll"] + parts["kl_loss"] if use_kl else parts["nll"]
  return loss, parts
