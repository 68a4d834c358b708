"""Synthetic multi-modal alignment: six predictors of ``p(y | x)`` on data sets
A, B and C (GJE paper Figs. 4-5; design doc "Synthetic multi-modal alignment").

  python -m studies.synthetic_alignment.study --out results/synthetic_alignment

Methods (all fitted on the same training pairs, evaluated on the same held-out
pairs and contexts):

* ``jepa``: classic JEPA, an MLP predictor trained with squared error; its
  predictive is ``N(f(x), σ²)`` with σ² the training residual variance (what a
  squared-error loss implies), so it can only place mass at the conditional mean.
* ``rbf``: RBF-kernel ridge regression (flexible mean), same unimodal Gaussian
  predictive.
* ``gmje_em_k1`` / ``gmje_em_k3``: a full-covariance Gaussian mixture over
  ``u = [x; y]`` fitted by mini-batch stepwise EM (:func:`gjax.math.online_em_step`,
  k-means start), predicting with the Schur-complement conditional mixture.
* ``gmje_gng``: Growing Neural Gas nodes over ``u`` as isotropic components
  (:mod:`gjax.math.gng`), same conditional.
* ``gmje_mdn``: a mixture density network on ``x`` alone
  (:class:`gjax.models.MixtureDensityNetwork`, K = 3), trained on the conditional NLL.

Metrics: held-out conditional NLL (and the generating process's own NLL as the
floor), the energy distance between predictive samples and true conditional
samples averaged over a grid of contexts, branch coverage (the fraction of
(context, branch) pairs with at least 10 % of the predictive samples within
3 noise std of the branch) and precision (the fraction of predictive samples
within 3 noise std of some branch). ``--rows results.jsonl`` writes the table
of committed rows again (no fitting).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import flags

from gjax import math as gm
from gjax.data.multimodal import (
  NAMES,
  NOISE_STD,
  branch_values,
  make_multimodal,
  sample_true_conditional,
  true_conditional_log_prob,
)
from gjax.models.heads import MLP, MixtureDensityNetwork
from gjax.objectives.gmje_mdn import mdn_conditional_log_prob
from studies import cli

METHODS = ("jepa", "rbf", "gmje_em_k1", "gmje_em_k3", "gmje_gng", "gmje_mdn")
LABELS = {
  "jepa": "JEPA (MSE predictor)",
  "rbf": "RBF kernel regression",
  "gmje_em_k1": "GMJE-EM K=1 (GJE)",
  "gmje_em_k3": "GMJE-EM K=3",
  "gmje_gng": "GMJE-GNG",
  "gmje_mdn": "GMJE-MDN",
}
COVER_RADIUS = 3 * NOISE_STD


class Predictive(NamedTuple):
  """Per-context 1-D Gaussian mixtures ``p(y | x_n)``: ``logits``, ``means``,
  ``var`` all ``[N, K]``."""

  logits: np.ndarray
  means: np.ndarray
  var: np.ndarray

  def log_prob(self, y) -> np.ndarray:
    y = np.asarray(y, np.float64)[:, None]
    log_w = self.logits - _logsumexp(self.logits)
    comp = -0.5 * (y - self.means) ** 2 / self.var - 0.5 * np.log(2 * np.pi * self.var)
    return _logsumexp(log_w + comp)[:, 0]

  def sample(self, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    w = np.exp(self.logits - _logsumexp(self.logits))
    u = rng.uniform(size=(w.shape[0], num_samples, 1))
    k = np.minimum((u > np.cumsum(w, axis=1)[:, None, :]).sum(-1), w.shape[1] - 1)
    means, std = (np.take_along_axis(a, k, axis=1) for a in (self.means, np.sqrt(self.var)))
    return means + std * rng.normal(size=k.shape)


def _logsumexp(a):
  top = np.max(a, axis=-1, keepdims=True)
  return top + np.log(np.sum(np.exp(a - top), axis=-1, keepdims=True))


Fitter = Callable[[np.ndarray, np.ndarray, int], Callable[[np.ndarray], Predictive]]


def _adam_fit(loss_fn, params, steps: int, learning_rate: float):
  tx = optax.adam(learning_rate)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  for _ in range(steps):
    params, opt_state, loss = step(params, opt_state)
  return params, float(loss)


def fit_jepa(x, y, seed, steps: int = 2000):
  net = MLP((64, 64, 1), norm="none", activation="relu")
  xs, ys = jnp.asarray(x, jnp.float32)[:, None], jnp.asarray(y, jnp.float32)
  params = net.init(jax.random.PRNGKey(seed), xs, train=False)
  mse = lambda p: jnp.mean(jnp.square(net.apply(p, xs, train=False)[:, 0] - ys))
  params, residual = _adam_fit(mse, params, steps, 1e-2)
  return lambda xq: Predictive(
    np.zeros((len(xq), 1)),
    np.asarray(net.apply(params, jnp.asarray(xq, jnp.float32)[:, None], train=False), np.float64),
    np.full((len(xq), 1), residual),
  )


def fit_rbf(x, y, seed, lengthscale: float = 0.2, ridge: float = 1e-2):
  del seed
  kernel = lambda a, b: np.exp(-0.5 * (a[:, None] - b[None, :]) ** 2 / lengthscale**2)
  alpha = np.linalg.solve(kernel(x, x) + ridge * np.eye(len(x)), y)
  residual = float(np.mean((kernel(x, x) @ alpha - y) ** 2))
  return lambda xq: Predictive(
    np.zeros((len(xq), 1)), (kernel(np.asarray(xq), x) @ alpha)[:, None], np.full((len(xq), 1), residual)
  )


def _conditional(logits, means, cov, covariance_type):
  def predict(xq):
    cond = gm.mixture_conditional(jnp.asarray(xq, jnp.float32)[:, None], logits, means, cov, 1, covariance_type)
    var = np.asarray(cond.cov, np.float64)
    var = var[:, 0, 0] ** 2 if covariance_type == "full" else var.reshape(var.shape[0], -1)[:, 0]
    return Predictive(
      np.asarray(cond.logits, np.float64),
      np.asarray(cond.means, np.float64)[..., 0],
      np.broadcast_to(var, (len(xq), var.shape[0])).copy(),
    )

  return predict


def _kmeans(u, k, rng, iterations=20):
  centres = u[rng.choice(len(u), k, replace=False)]
  for _ in range(iterations):
    label = np.argmin(((u[:, None] - centres) ** 2).sum(-1), axis=1)
    centres = np.stack([u[label == j].mean(0) if np.any(label == j) else centres[j] for j in range(k)])
  return centres


def fit_gmje_em(x, y, seed, k: int, steps: int = 1500, batch: int = 256):
  """Mini-batch stepwise EM (step size ``(t + 2)^-0.6``) from a k-means start."""
  u = np.stack([x, y], -1).astype(np.float32)
  rng = np.random.default_rng(seed)
  cov0 = np.linalg.cholesky(np.cov(u.T) + 1e-3 * np.eye(2)).astype(np.float32)
  params = gm.MixtureParams(
    jnp.zeros(k), jnp.asarray(_kmeans(u, k, rng), jnp.float32), jnp.broadcast_to(jnp.asarray(cov0), (k, 2, 2))
  )
  stats, _ = gm.mixture_statistics(jnp.asarray(u), *params, "full")
  step = jax.jit(lambda b, s, p, r: gm.online_em_step(b, s, p, "full", r, cov_floor=1e-4))
  for t in range(steps):
    rate = jnp.float32(max((t + 2) ** -0.6, 0.02))
    stats, params, _ = step(jnp.asarray(u[rng.choice(len(u), batch)]), stats, params, rate)
  return _conditional(*params, "full")


def fit_gmje_gng(x, y, seed, capacity: int = 48, epochs: int = 5):
  u = np.stack([x, y], -1).astype(np.float32)
  rng = np.random.default_rng(seed)
  state = gm.gng_init(jnp.asarray(u[rng.choice(len(u), 2, replace=False)]), capacity)
  update = jax.jit(gm.gng_update)
  for _ in range(epochs):
    state = update(state, jnp.asarray(u[rng.permutation(len(u))]))
  variance = float(gm.gng_quantization_error(state, jnp.asarray(u))) / 2
  logits, means, var = gm.gng_mixture(state, variance)
  return _conditional(logits, means, var, "isotropic")


def fit_gmje_mdn(x, y, seed, k: int = 3, steps: int = 3000):
  net = MixtureDensityNetwork(latent_dim=1, num_components=k, hidden=64)
  xs, ys = jnp.asarray(x, jnp.float32)[:, None], jnp.asarray(y, jnp.float32)[:, None]
  params = net.init(jax.random.PRNGKey(seed), xs)

  def nll(p):
    out = net.apply(p, xs)
    return -jnp.mean(mdn_conditional_log_prob(ys, out["mdn_logits"], out["mdn_means"], out["mdn_var"]))

  params, _ = _adam_fit(nll, params, steps, 3e-3)

  def predict(xq):
    out = net.apply(params, jnp.asarray(xq, jnp.float32)[:, None])
    return Predictive(
      np.asarray(out["mdn_logits"], np.float64),
      np.asarray(out["mdn_means"], np.float64)[..., 0],
      np.asarray(out["mdn_var"], np.float64)[..., 0],
    )

  predict.network = (net, params)
  return predict


FITTERS: dict[str, Fitter] = {
  "jepa": fit_jepa,
  "rbf": fit_rbf,
  "gmje_em_k1": lambda x, y, s: fit_gmje_em(x, y, s, 1),
  "gmje_em_k3": lambda x, y, s: fit_gmje_em(x, y, s, 3),
  "gmje_gng": fit_gmje_gng,
  "gmje_mdn": fit_gmje_mdn,
}


def energy_distance_1d(a: np.ndarray, b: np.ndarray) -> float:
  """``2 E|A - B| - E|A - A'| - E|B - B'|`` from samples (V-statistics)."""
  cross = np.mean(np.abs(a[:, None] - b[None, :]))
  return float(2 * cross - np.mean(np.abs(a[:, None] - a[None, :])) - np.mean(np.abs(b[:, None] - b[None, :])))


def predictive_metrics(
  name: str,
  predictive: Callable[[np.ndarray], Predictive],
  test,
  contexts: np.ndarray,
  rng: np.random.Generator,
  num_samples: int = 400,
) -> dict[str, float]:
  samples = predictive(contexts).sample(num_samples, rng)
  truth = sample_true_conditional(name, contexts, num_samples, rng)
  distance = np.abs(samples[:, :, None] - branch_values(name, contexts)[:, None, :])  # [G, S, branches]
  near = distance < COVER_RADIUS
  return {
    "test_nll": float(-np.mean(predictive(test.x).log_prob(test.y))),
    "energy_distance": float(np.mean([energy_distance_1d(s, t) for s, t in zip(samples, truth)])),
    "coverage": float(np.mean(near.mean(axis=1) >= 0.1)),
    "precision": float(np.mean(near.any(axis=-1))),
  }


def run(
  out_dir: str,
  datasets=("A", "B", "C"),
  methods=METHODS,
  num_train: int = 3000,
  num_test: int = 2000,
  seed: int = 0,
  plot: bool = True,
) -> list[dict]:
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  contexts = np.linspace(-0.95, 0.95, 39)
  for name in datasets:
    train, test = make_multimodal(name, num_train, seed), make_multimodal(name, num_test, seed + 1)
    fitted = {}
    for method in methods:
      start = time.time()
      fitted[method] = FITTERS[method](train.x, train.y, seed)
      seconds = time.time() - start
      row = {
        "dataset": name,
        "method": method,
        "fit_seconds": round(seconds, 2),
        **predictive_metrics(name, fitted[method], test, contexts, np.random.default_rng(seed + 2)),
      }
      rows.append(row)
      print(json.dumps(row), flush=True)
    rows.append(
      {"dataset": name, "method": "true", "test_nll": float(-np.mean(true_conditional_log_prob(name, test.x, test.y)))}
    )
    if plot:
      from studies.synthetic_alignment.plots import plot_alignment_panels, plot_mdn_routing

      plot_alignment_panels(
        train,
        fitted,
        [LABELS[m] for m in methods],
        contexts,
        os.path.join(out_dir, f"fig4_dataset_{name}.png"),
        f"Data set {name}: {NAMES[name]}",
      )
      if "gmje_mdn" in fitted:
        plot_mdn_routing(name, fitted["gmje_mdn"], os.path.join(out_dir, f"fig5_mdn_routing_{name}.png"))
  with open(os.path.join(out_dir, "results.jsonl"), "w") as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")
  with open(os.path.join(out_dir, "results.md"), "w") as f:
    f.write(markdown_table(rows))
  return rows


def markdown_table(rows: list[dict]) -> str:
  lines = [
    "| data set | method | held-out NLL | energy distance | branch coverage | precision | fit s |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    if r["method"] == "true":
      lines.append(f"| {r['dataset']} | generating process | {r['test_nll']:.3f} | 0 | 1 | 1 | |")
      continue
    lines.append(
      f"| {r['dataset']} | {LABELS[r['method']]} | {r['test_nll']:.3f} | {r['energy_distance']:.4f} | "
      f"{r['coverage']:.2f} | {r['precision']:.2f} | {r['fit_seconds']:.1f} |"
    )
  return "\n".join(lines) + "\n"


def define(values) -> None:
  flags.DEFINE_string("out", None, "where results.md, results.jsonl and the figures go", flag_values=values)
  flags.DEFINE_list("datasets", ["A", "B", "C"], "data sets", flag_values=values)
  flags.DEFINE_list("methods", list(METHODS), f"methods, of {list(METHODS)}", flag_values=values)
  flags.DEFINE_integer("num_train", 3000, "training pairs per data set", flag_values=values)
  flags.DEFINE_integer("seed", 0, "of the data, the fits and the samples", flag_values=values)
  flags.DEFINE_string(
    "rows", "", "instead of fitting: the results.jsonl whose table is written to <out>/results.md", flag_values=values
  )
  flags.mark_flag_as_required("out", flag_values=values)


def study(values) -> list[dict]:
  if values.rows:
    with open(values.rows) as f:
      rows = [json.loads(line) for line in f if line.strip()]
    os.makedirs(values.out, exist_ok=True)
    with open(os.path.join(values.out, "results.md"), "w") as f:
      f.write(markdown_table(rows))
    return rows
  unknown = [m for m in values.methods if m not in FITTERS]
  if unknown:
    raise cli.StudyError(f"unknown method(s) {unknown}; known: {list(FITTERS)}")
  return run(values.out, values.datasets, values.methods, values.num_train, seed=values.seed)


def main(argv=None):
  return cli.run("studies.synthetic_alignment.study", define, study, argv)


if __name__ == "__main__":
  main()
