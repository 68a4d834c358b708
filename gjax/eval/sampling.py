"""Unconditional sampling from learned latent densities (GJE paper abstract;
design doc "Unconditional sampling"): the registered ``sampling`` evaluator.

Samples ``u = [z_c; z_t] ~ p(u)`` from a model's learned joint density are
compared with held-out real joint embeddings (two random views of each test
image through the same encoder) by the MMD with an RBF kernel and by k-NN
precision and recall (Kynkäänniemi et al., 2019). The reference for each
embedding space is a Gaussian and a K-component Gaussian mixture fitted to
that model's training embeddings afterwards; for a model without a density
(VJE, the baselines) they are the only samplers. Each density also gets the
held-out NLL of the test embeddings (nats per dimension) and its dispersion
(its total variance, the trace of its covariance, over that of the test
embeddings: 1 is matched, < 1 too narrow).

Diagnosis rows (issue: under-dispersed learned densities): the learned
density is trained on the embeddings of training steps, i.e. with BatchNorm
in training mode (each batch's statistics), while the embeddings above are
computed as at evaluation (running averages). ``vs train-mode embeddings``
rows compare the learned density with test embeddings computed in training
mode (batches of the training batch size): if it fits those but not the
evaluation-mode ones, the shift between the two modes is the cause.

The study that tabulates these rows for several finished runs, with what each
mixture component holds and pictures of the samples, is
``studies/compare/sampling.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gjax import math as gm
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.objectives import require


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  return np.maximum(np.sum(a * a, 1)[:, None] - 2 * a @ b.T + np.sum(b * b, 1)[None, :], 0.0)


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
  """Unbiased ``MMD²`` between samples ``x [n, d]`` and ``y [m, d]`` with the
  kernel ``exp(-||a - b||² / (2 h²))``."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  if x.shape[1] != y.shape[1]:
    raise ValueError(f"samples of dimension {x.shape[1]} and {y.shape[1]} cannot be compared")
  if bandwidth <= 0:
    raise ValueError(f"bandwidth must be > 0, got {bandwidth}")
  k = lambda a, b: np.exp(-_sq_dists(a, b) / (2 * bandwidth**2))
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return float(
    (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * k(x, y).mean()
  )


def median_distance(x: np.ndarray) -> float:
  """The median pairwise distance (the usual MMD bandwidth)."""
  d = np.sqrt(_sq_dists(x, x))
  return float(np.median(d[np.triu_indices(len(x), 1)]))


def knn_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
  """Precision: the fraction of ``fake`` inside the union of the real samples'
  k-NN balls; recall: the fraction of ``real`` inside the fake samples' balls."""

  def radii(a):
    d = _sq_dists(a, a)
    return np.sqrt(np.partition(d, k, axis=1)[:, k])  # column 0 is the point itself

  def covered(ref, query):
    return float(np.mean(np.any(np.sqrt(_sq_dists(query, ref)) <= radii(ref)[None, :], axis=1)))

  return covered(real, fake), covered(fake, real)


def fitted_gaussian_sampler(train: np.ndarray, ridge: float = 1e-4):
  """Samples from ``N(mean, cov + ridge I)`` fitted to ``train [n, d]``."""
  mean = train.mean(0)
  chol = np.linalg.cholesky(np.cov(train.T) + ridge * np.eye(train.shape[1]))
  return lambda rng, n: mean + rng.normal(size=(n, train.shape[1])) @ chol.T


def fitted_gaussian_nll(train: np.ndarray, ridge: float = 1e-4):
  """``x -> -log N(x; mean, cov + ridge I)`` per row, for the Gaussian of :func:`fitted_gaussian_sampler`."""
  mean = train.mean(0)
  cov = np.cov(train.T) + ridge * np.eye(train.shape[1])
  return lambda x: (
    -np.asarray(
      gm.gaussian_log_prob_from_cov(
        jnp.asarray(x, jnp.float32), jnp.asarray(mean, jnp.float32), jnp.asarray(cov, jnp.float32)
      )
    )
  )


def fitted_mixture(train: np.ndarray, components: int, seed: int, ridge: float = 1e-4):
  """A full-covariance Gaussian mixture fitted to ``train`` by EM (scikit-learn,
  ``reg_covar = ridge``): ``(sampler, nll)`` like the fitted Gaussian's."""
  from sklearn.mixture import GaussianMixture

  if components < 1:
    raise ValueError(f"a mixture needs >= 1 components, got {components}")
  gmm = GaussianMixture(components, covariance_type="full", reg_covar=ridge, random_state=seed, max_iter=200)
  gmm.fit(np.asarray(train, np.float64))

  def sampler(rng, n):
    gmm.random_state = int(rng.integers(1 << 30))
    return gmm.sample(n)[0]

  return sampler, lambda x: -gmm.score_samples(np.asarray(x, np.float64))


def sample_quality(real: np.ndarray, fake: np.ndarray, bandwidth: float, k: int = 5) -> dict[str, float]:
  precision, recall = knn_precision_recall(real, fake, k)
  # Total variance (trace of the covariance) of the samples over that of the
  # real embeddings: a per-dimension mean would be dominated by collapsed
  # dimensions, whose real variance is ~0.
  dispersion = float(np.sum(np.var(fake, axis=0)) / max(float(np.sum(np.var(real, axis=0))), 1e-12))
  return {"mmd2": mmd_rbf(real, fake, bandwidth), "precision": precision, "recall": recall, "dispersion": dispersion}


def embed_views(model, variables, config, mesh, train_x, test_x, num_examples: int, seed: int):
  """Two-view joint embeddings of ``num_examples`` of the ``train_x`` and
  ``test_x`` images (and of the test images in training mode,
  ``"test_train_mode"``), the learned density (or ``None``) and the train
  images embedded (row for row)."""
  from gjax.eval.features import extract_features
  from gjax.train.input_pipeline import augment_config

  augment = augment_config(config, train_x.shape[1:])
  rng = np.random.default_rng(seed)
  joint, embedded = {}, {}
  for split, images in (("train", train_x), ("test", test_x)):
    images = images[rng.choice(len(images), min(num_examples, len(images)), replace=False)]
    embedded[split] = images
    for name, train_mode in ((split, False), (f"{split}_train_mode", True)):
      if train_mode and split == "train":
        continue
      batch_size = min(config.batch_size, len(images)) if train_mode else config.eval.batch_size
      views = [
        extract_features(
          model,
          variables,
          images,
          augment,
          mesh,
          batch_size,
          view_rng=jax.random.PRNGKey(seed + 10 * i + (split == "test")),
          train_mode=train_mode,
        )["z"]
        for i in (1, 2)
      ]
      joint[name] = np.concatenate(views, axis=1)
  density = model.apply(variables, method=lambda m: m.density(None)) if model.density is not None else None
  if density is not None and "density_means" not in density:  # a memory bank is not a joint density
    density = None
  return joint, density, embedded["train"]


def sampler_rows(name: str, config, joint, density, gmm_components: int, seed: int):
  """The rows of one run (every sampler against the held-out test embeddings,
  the learned density also against the train-mode ones, and the floor) and
  its samplers ``{name: (sample(rng, n), nll(x))}``."""
  real, bandwidth = joint["test"], median_distance(joint["test"])
  rng = np.random.default_rng(seed)
  method_k = config[config.method].get("num_components", 1)
  k = max(gmm_components, method_k)
  mixture_sampler, mixture_nll = fitted_mixture(joint["train"], k, seed)
  samplers = {
    "Gaussian fitted afterwards": (fitted_gaussian_sampler(joint["train"]), fitted_gaussian_nll(joint["train"])),
    f"{k}-component GMM fitted afterwards": (mixture_sampler, mixture_nll),
  }
  if density is not None:
    cov_type = config[config.method].covariance_type
    args_density = (density["density_logits"], density["density_means"], density["density_cov"], cov_type)
    samplers["learned density"] = (
      lambda rng, n: np.asarray(
        gm.mixture_sample(jax.random.PRNGKey(int(rng.integers(1 << 30))), *args_density[:3], cov_type, (n,))
      ),
      lambda x: -np.asarray(gm.mixture_log_prob(jnp.asarray(x, jnp.float32), *args_density)),
    )
  dim = real.shape[1]
  references = [("", real)]
  if density is not None:
    references.append((" vs train-mode embeddings", joint["test_train_mode"]))
  rows = []
  for suffix, reference in references:
    ref_bandwidth = bandwidth if not suffix else median_distance(reference)
    for sampler_name, (sampler, nll) in samplers.items():
      if suffix and sampler_name != "learned density":
        continue
      rows.append(
        {
          "run": name,
          "method": config.method,
          "sampler": sampler_name + suffix,
          **sample_quality(reference, sampler(rng, len(reference)), ref_bandwidth),
          "heldout_nll_per_dim": float(np.mean(nll(reference))) / dim,
        }
      )
  # The floor: held-out real train embeddings against the real test ones.
  rows.append(
    {
      "run": name,
      "method": config.method,
      "sampler": "real train embeddings (floor)",
      **sample_quality(real, joint["train"], bandwidth),
      "heldout_nll_per_dim": float("nan"),
    }
  )
  return rows, samplers


def _slug(sampler: str) -> str:
  """``"4-component GMM fitted afterwards"`` -> ``"4_component_gmm_fitted_afterwards"``."""
  return "".join(c if c.isalnum() else "_" for c in sampler.lower()).strip("_").replace("__", "_")


def run_sampling(context, settings) -> dict[str, float]:
  """The ``sampling`` evaluator: :func:`sampler_rows` of the run in ``context``
  as metrics ``sampling_<sampler>_<mmd2|precision|recall|dispersion|heldout_nll_per_dim>``."""
  config = context.config
  # A bounded sample is all it needs (``num_examples`` per split, drawn from an
  # in-memory split; a streamed split's first ``num_examples``): its figures
  # compare densities on a few thousand embeddings, not the whole split.
  train_x, _ = context.split("train").head(settings.num_examples)
  test_x, _ = context.split("test").head(settings.num_examples)
  joint, density, _ = embed_views(
    context.model, context.variables, config, context.mesh, train_x, test_x, settings.num_examples, settings.seed
  )
  rows, _ = sampler_rows(config.method, config, joint, density, settings.gmm_components, settings.seed)
  return {
    f"sampling_{_slug(r['sampler'])}_{metric}": float(r[metric])
    for r in rows
    for metric in ("mmd2", "precision", "recall", "dispersion", "heldout_nll_per_dim")
  }


def check_sampling_settings(s, config) -> None:
  require(s.num_examples >= 2, "eval.evaluators.sampling.num_examples", s.num_examples, "must be >= 2")
  require(s.gmm_components >= 1, "eval.evaluators.sampling.gmm_components", s.gmm_components, "must be >= 1")
  require(s.seed >= 0, "eval.evaluators.sampling.seed", s.seed, "must be >= 0")


SAMPLING = register_evaluator(
  Evaluator(
    "sampling",
    run_sampling,
    defaults={"num_examples": 2000, "gmm_components": 8, "seed": 0},
    check=check_sampling_settings,
    description="unconditional samples of latent densities vs post-hoc fits",
  )
)
