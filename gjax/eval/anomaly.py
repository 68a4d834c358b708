"""One-class anomaly detection with VJE (paper Section 5.3): scores and AUROC.

One model is trained on the normal class only; at test time every example gets
a score where *higher means more anomalous*, and :func:`auroc` measures how
well the score separates the inliers (the training class) from the outliers.
The paper's scores, for an encoder embedding ``z [N, D]`` and the inference
network's diagonal Gaussian posterior ``q(s | z) = N(mu, diag(var))``
(``var`` already floored, see :func:`gjax.math.softplus_variance`):

* :func:`joint_nll_score`, the primary score (Eq. 39): the per-sample NLL terms
  of the training objective (Eq. 38), ``S = ℓ_dir(ẑ, ŝ; σ²) + ℓ_rad(||z|| - ||s||)``.
* :func:`variance_sum_score`: ``S_var = Σ_d σ²_d``.
* :func:`entropy_score`: ``S_ent = ½ Σ_d log(2πe σ²_d)``, the entropy of the
  diagonal Gaussian posterior.

All scores are batched over leading axes (reduce the last, feature axis),
jit-able, and take ``nu`` as a static Python number (``math.inf`` for the
Gaussian limit).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats

from gjax.math import (
  EPS,
  _checks,
  kl_diag_gaussian_standard_normal,
  reparameterize_diag,
  student_t_directional_parts,
  student_t_radial_nll,
)

_LOG_2PI_E = math.log(2.0 * math.pi * math.e)


def auroc(scores, is_anomaly) -> float:
  """Area under the ROC curve of ``scores`` for detecting ``is_anomaly``.

  Rank-based (Mann-Whitney U): with average ranks ``r`` of all scores (ties
  share their mean rank, :func:`scipy.stats.rankdata`), ``n₁`` anomalies and
  ``n₀`` normals, ``AUROC = (Σ_{anomalies} r - n₁(n₁+1)/2) / (n₁ n₀)``, the
  probability that a random anomaly scores higher than a random normal
  example, ties counting ½. Higher score = more anomalous. Equal to
  ``sklearn.metrics.roc_auc_score(is_anomaly, scores)``.

  Args:
    scores: ``[N]`` finite anomaly scores.
    is_anomaly: ``[N]`` booleans (or 0/1): True for outliers.

  Raises:
    ValueError: shapes differ or are not 1-D, a score is non-finite, a label is
      not boolean/0/1, or one of the two classes is absent.
  """
  scores = np.asarray(scores)
  labels = np.asarray(is_anomaly)
  if scores.ndim != 1 or labels.ndim != 1:
    raise ValueError(f"scores and is_anomaly must be 1-D; got shapes {scores.shape} and {labels.shape}")
  if scores.shape != labels.shape:
    raise ValueError(f"scores has {scores.shape[0]} entries but is_anomaly has {labels.shape[0]}")
  if not np.issubdtype(scores.dtype, np.number) or np.iscomplexobj(scores):
    raise ValueError(f"scores must be real numbers; got dtype {scores.dtype}")
  finite = np.isfinite(scores)
  if not finite.all():
    raise ValueError(f"scores has {int((~finite).sum())} non-finite entries of {scores.size}")
  if labels.dtype != np.bool_:
    if not np.isin(labels, (0, 1)).all():
      raise ValueError(f"is_anomaly must be boolean or 0/1; got values {np.unique(labels)[:5]}")
    labels = labels.astype(bool)
  num_anomalies = int(labels.sum())
  num_normals = labels.size - num_anomalies
  if num_anomalies == 0 or num_normals == 0:
    raise ValueError(f"AUROC needs both classes; got {num_anomalies} anomalies and {num_normals} normal examples")
  ranks = scipy.stats.rankdata(scores.astype(np.float64), method="average")
  u_statistic = ranks[labels].sum() - num_anomalies * (num_anomalies + 1) / 2.0
  return float(u_statistic / (num_anomalies * num_normals))


def _check_same_shape(**arrays) -> tuple[int, ...]:
  shapes = {name: np.shape(a) for name, a in arrays.items()}
  first_name, first = next(iter(shapes.items()))
  if len(first) == 0:
    raise ValueError(f"{first_name} must have a feature axis [..., D]; got a scalar")
  for name, shape in shapes.items():
    if shape != first:
      raise ValueError(f"{name} has shape {shape}, expected {first_name}'s shape {first}")
  return first


@functools.partial(jax.jit, static_argnames=("nu", "num_samples", "eps", "radial_scale"))
def _joint_nll_parts(obs, mu, var, rng, *, nu, num_samples, eps, radial_scale):
  def parts_at(s):
    kernel, log_det = student_t_directional_parts(obs, s, var, nu, eps)
    return {
      "kernel": kernel,
      "log_det": jnp.broadcast_to(log_det, kernel.shape),
      "radial": student_t_radial_nll(obs, s, nu, radial_scale),
    }

  if num_samples == 0:
    return parts_at(mu)
  noise = jax.random.normal(rng, (num_samples,) + mu.shape, mu.dtype)
  return {k: jnp.mean(v, axis=0) for k, v in parts_at(reparameterize_diag(mu, var, noise)).items()}


def joint_nll_parts(
  z, mu, var, nu: float, *, num_samples: int = 0, rng=None, z_obs=None, eps: float = EPS, radial_scale: float = 1.0
) -> dict[str, jax.Array]:
  """The three parts of the Eq. 39 score, each ``[...]``, higher = more anomalous:
  ``kernel`` (the directional fit ``(nu + D)/2 · log(1 + Q/nu)``), ``log_det``
  (``½ Σ_d log σ²_d``, the directional normaliser's scale term) and ``radial``
  (Eq. 29). Their sum is :func:`joint_nll_score`; the arguments are its own."""
  nu = _checks.check_nu(nu)
  if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
    raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
  num_samples = int(num_samples)
  if num_samples > 0 and rng is None:
    raise ValueError(f"num_samples={num_samples} > 0 needs a PRNG key rng")
  arrays = {"z": z, "mu": mu, "var": var}
  if z_obs is not None:
    arrays["z_obs"] = z_obs
  _check_same_shape(**arrays)
  _checks.check_positive("var", var)
  obs = jnp.asarray(z if z_obs is None else z_obs)
  return _joint_nll_parts(
    obs,
    jnp.asarray(mu),
    jnp.asarray(var),
    rng,
    nu=nu,
    num_samples=num_samples,
    eps=float(eps),
    radial_scale=float(radial_scale),
  )


def joint_nll_score(
  z, mu, var, nu: float, *, num_samples: int = 0, rng=None, z_obs=None, eps: float = EPS, radial_scale: float = 1.0
) -> jax.Array:
  """The VJE joint-likelihood anomaly score, Eq. 39 (Section 5.3); ``[...]``.

  ``S = ℓ_dir(ẑ, ŝ; σ²) + ℓ_rad(Δr)``, ``Δr = ||z|| - ||s||``, with
  ``ℓ_dir`` = :func:`gjax.math.student_t_directional_nll` (Eq. 24: unit
  directions with the ``max(||·||, eps)`` floor, ``Q = Σ_d (ŝ_d - ẑ_d)²/σ²_d``,
  ``(nu + D)/2 · log(1 + Q/nu) + ½ Σ_d log σ²_d``) and ``ℓ_rad`` =
  :func:`gjax.math.student_t_radial_nll` (Eq. 29, ``λ = radial_scale``). The
  posterior variance ``σ² = var`` is also the directional scale (Section 4.2).
  Higher = more anomalous.

  Observation and posterior. By default the score is *single-view*: ``z`` is
  the test example's own embedding (the observation) and ``(mu, var)`` is the
  posterior the inference network infers from that same ``z``, so the score
  asks how well the model's posterior explains the embedding it came from (at
  test time there is no second augmented view). Pass ``z_obs`` (same shape) to
  score a *cross-view* pair as in training (Eq. 38): ``(mu, var)`` inferred
  from view ``z`` then scores the other view's embedding ``z_obs``; ``z`` is
  then only the source of the posterior and is used for shape checks. For the
  symmetric two-view score, average the two directions.

  Posterior point vs. expectation. With ``num_samples=0`` the latent is the
  posterior mean, ``s = mu`` (a deterministic score). With ``num_samples=M > 0``
  the score is averaged over ``M`` reparameterised samples
  ``s_m = mu + sqrt(var) ⊙ ε_m`` (Eq. 33), the Monte-Carlo estimate of
  ``E_q[S]``; Eq. 39 itself is written per sample, as in the one-sample
  training loss. The noise is ``ε = jax.random.normal(rng, (M, *mu.shape),
  mu.dtype)``, so a given ``rng`` reproduces the score.

  Args:
    z: ``[..., D]`` encoder embeddings (the source view).
    mu: ``[..., D]`` posterior means inferred from ``z``.
    var: ``[..., D]`` posterior variances (> 0, already floored).
    nu: Student-t degrees of freedom, static; ``math.inf`` = Gaussian limit.
    num_samples: 0 for the posterior mean, ``M > 0`` for the MC average.
    rng: PRNG key, required when ``num_samples > 0``.
    z_obs: optional ``[..., D]`` observed embedding of another view.
    eps: norm floor of the directions (VJE Appendix A: 1e-6).
    radial_scale: ``λ`` of the radial likelihood (the paper fixes 1).

  Raises:
    ValueError: shapes differ, ``num_samples`` is negative or not an integer,
      ``num_samples > 0`` without ``rng``, a concrete ``var`` entry is <= 0, or
      ``nu`` is not > 0.
  """
  parts = joint_nll_parts(
    z, mu, var, nu, num_samples=num_samples, rng=rng, z_obs=z_obs, eps=eps, radial_scale=radial_scale
  )
  return parts["kernel"] + parts["log_det"] + parts["radial"]


def variance_sum_score(var) -> jax.Array:
  """``S_var = Σ_d σ²_d`` (VJE Section 5.3, "variance sum"); ``[...]``.

  Total posterior variance; higher = the model is less certain = more
  anomalous.
  """
  _check_same_shape(var=var)
  return jnp.sum(jnp.asarray(var), axis=-1)


def entropy_score(var) -> jax.Array:
  """``S_ent = ½ Σ_d log(2πe σ²_d)`` (VJE Section 5.3); ``[...]``.

  The differential entropy of the diagonal Gaussian posterior
  ``N(mu, diag(var))`` (independent of ``mu``); higher = more anomalous.

  Raises:
    ValueError: a concrete ``var`` entry is <= 0.
  """
  _check_same_shape(var=var)
  _checks.check_positive("var", var)
  var = jnp.asarray(var)
  return 0.5 * jnp.sum(jnp.log(var), axis=-1) + 0.5 * var.shape[-1] * _LOG_2PI_E


def vje_anomaly_scores(z, mu, var, nu: float, **joint_kwargs) -> dict[str, jax.Array]:
  """The three Section 5.3 scores ``{"joint", "variance_sum", "entropy"}``,
  and the parts of Eq. 39 and the ELBO, so a table shows which carries the signal:
  ``joint_kernel``, ``joint_log_det``, ``joint_radial`` (:func:`joint_nll_parts`;
  ``joint`` is their sum) and ``neg_elbo`` = ``joint + KL(q || N(0, I))``, the
  per-example negative conditional ELBO (Eq. 37 for one direction, ``beta = 1``).

  ``joint_kwargs`` go to :func:`joint_nll_parts` (``num_samples``, ``rng``,
  ``z_obs``, ``eps``, ``radial_scale``).
  """
  parts = joint_nll_parts(z, mu, var, nu, **joint_kwargs)
  joint = parts["kernel"] + parts["log_det"] + parts["radial"]
  return {
    "joint": joint,
    "joint_kernel": parts["kernel"],
    "joint_log_det": parts["log_det"],
    "joint_radial": parts["radial"],
    "neg_elbo": joint + kl_diag_gaussian_standard_normal(jnp.asarray(mu), jnp.asarray(var)),
    "variance_sum": variance_sum_score(var),
    "entropy": entropy_score(var),
  }


def gaussian_density_score(train_features, test_features, ridge: float = 1e-3) -> jax.Array:
  """Negative log-density of ``test_features`` under a Gaussian fitted to the
  normal class's ``train_features`` (the "Gaussian density on features"
  detector of Sohn et al. 2021, a reference point for Section 5.3).

  The covariance is the training features' (1/N) covariance plus
  ``ridge · mean(diag)`` on the diagonal, so it stays positive definite when
  the features span fewer dimensions than they have; it is scored through its
  Cholesky factor (:func:`gjax.math.gaussian_log_prob_from_cov`).
  """
  from gjax.eval.features import check_features
  from gjax.math import gaussian_log_prob_from_cov

  train, test = np.asarray(train_features, np.float64), np.asarray(test_features)
  check_features("train_features", train)
  check_features("test_features", test)
  if train.shape[1] != test.shape[1]:
    raise ValueError(f"train {train.shape} and test {test.shape} feature sizes differ")
  if ridge <= 0:
    raise ValueError(f"ridge must be > 0, got {ridge!r}")
  mean = train.mean(axis=0)
  cov = np.cov(train, rowvar=False, bias=True).reshape(train.shape[1], train.shape[1])
  cov += ridge * max(np.trace(cov) / len(cov), 1e-12) * np.eye(len(cov))
  return -gaussian_log_prob_from_cov(
    jnp.asarray(test, jnp.float32), jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32)
  )
