"""Unconditional sampling from learned latent densities (GJE paper abstract;
design doc "Unconditional sampling").

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

  python -m gjax.eval.sampling --out results/compare_fashion_mnist/sampling.md \
      --run gje=configs/gje_fashion_mnist.py:compare,workdirs/compare/gje \
      --run gmje=configs/gmje_fashion_mnist.py:compare,workdirs/compare/gmje \
      --run vje=configs/vje_fashion_mnist.py:compare,workdirs/compare/vje

Besides the table: ``<out>.jsonl`` (rows), ``<out>_components.md`` (what each
component of a learned mixture holds, :func:`component_rows`), ``<out>_nearest_<run>.png`` (the
nearest training image of sampled latents, per sampler) and, for runs trained
with the evaluator online (``eval.online_evaluators`` naming ``sampling``),
``<out>_over_training.png`` (:func:`gjax.eval.plots.plot_density_over_training`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from gjax import math as gm
from gjax.cli import load_config
from gjax.eval.registry import Evaluator, load_run_config, register_evaluator
from gjax.objectives import require
from gjax.train.metrics import read_metrics


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
  k = lambda a, b: np.exp(-_sq_dists(a, b) / (2 * bandwidth ** 2))
  n, m = len(x), len(y)
  kxx, kyy = k(x, x), k(y, y)
  return float((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * k(x, y).mean())


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
  return lambda x: -np.asarray(gm.gaussian_log_prob_from_cov(jnp.asarray(x, jnp.float32),
                                                             jnp.asarray(mean, jnp.float32),
                                                             jnp.asarray(cov, jnp.float32)))


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
  return {"mmd2": mmd_rbf(real, fake, bandwidth), "precision": precision, "recall": recall,
          "dispersion": dispersion}


def run_embeddings(config, workdir: str, num_examples: int, seed: int):
  """Two-view joint embeddings of ``num_examples`` train and test images (and
  of the test images in training mode, ``"test_train_mode"``), the learned
  density (or ``None``) and the train images embedded (row for row)."""
  from gjax import data as gdata
  from gjax.train.input_pipeline import load_in_memory
  from gjax.train.state import restore_run

  mesh = gdata.data_mesh()
  train_x, _ = load_in_memory(config, "train")
  test_x, _ = load_in_memory(config, "test")
  model, state = restore_run(config, workdir, train_x.shape[1:], mesh)
  return embed_views(model, state.variables, config, mesh, train_x, test_x, num_examples, seed)


def embed_views(model, variables, config, mesh, train_x, test_x, num_examples: int, seed: int):
  """:func:`run_embeddings` for a model and its variables in hand."""
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
      views = [extract_features(model, variables, images, augment, mesh, batch_size,
                                view_rng=jax.random.PRNGKey(seed + 10 * i + (split == "test")),
                                train_mode=train_mode)["z"]
               for i in (1, 2)]
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
  samplers = {"Gaussian fitted afterwards": (fitted_gaussian_sampler(joint["train"]),
                                             fitted_gaussian_nll(joint["train"])),
              f"{k}-component GMM fitted afterwards": (mixture_sampler, mixture_nll)}
  if density is not None:
    cov_type = config[config.method].covariance_type
    args_density = (density["density_logits"], density["density_means"], density["density_cov"], cov_type)
    samplers["learned density"] = (
        lambda rng, n: np.asarray(gm.mixture_sample(jax.random.PRNGKey(int(rng.integers(1 << 30))),
                                                    *args_density[:3], cov_type, (n,))),
        lambda x: -np.asarray(gm.mixture_log_prob(jnp.asarray(x, jnp.float32), *args_density)))
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
      rows.append({"run": name, "method": config.method, "sampler": sampler_name + suffix,
                   **sample_quality(reference, sampler(rng, len(reference)), ref_bandwidth),
                   "heldout_nll_per_dim": float(np.mean(nll(reference))) / dim})
  # The floor: held-out real train embeddings against the real test ones.
  rows.append({"run": name, "method": config.method, "sampler": "real train embeddings (floor)",
               **sample_quality(real, joint["train"], bandwidth), "heldout_nll_per_dim": float("nan")})
  return rows, samplers


DEGENERATE_RATIO = 1e-3  # a covariance eigenvalue below this times the test embeddings' mean variance


def covariance_eigenvalues(cov, covariance_type: str, dim: int) -> np.ndarray:
  """``[K, dim]`` eigenvalues of each component's covariance, ascending (``full``:
  ``cov`` is the Cholesky factor ``L``, ``Σ = L Lᵀ``; ``diag``: the variances;
  ``isotropic``: the variance ``dim`` times)."""
  cov = np.asarray(cov, np.float64)
  if covariance_type == "full":
    return np.sort(np.linalg.svd(cov, compute_uv=False) ** 2, axis=-1)
  if covariance_type == "diag":
    return np.sort(cov, axis=-1)
  return np.repeat(cov[:, None], dim, axis=1)


def component_rows(name: str, density, covariance_type: str, real: np.ndarray) -> list[dict]:
  """What each component of a learned mixture holds: its prior weight, its
  responsibility mass on the held-out joint embeddings ``real``, the norm of
  its mean, its covariance eigenvalues (min / median / max) and its number of
  degenerate directions (eigenvalue below :data:`DEGENERATE_RATIO` times the
  mean per-dimension variance of ``real``: a component that holds many
  embeddings there is a collapse the batch covariance cannot see)."""
  logits, means, cov = (density[k] for k in ("density_logits", "density_means", "density_cov"))
  resp = np.asarray(gm.mixture_responsibilities(jnp.asarray(real, jnp.float32), logits, means, cov,
                                                covariance_type))
  eig = covariance_eigenvalues(cov, covariance_type, real.shape[1])
  threshold = DEGENERATE_RATIO * float(np.mean(np.var(real, axis=0)))
  weights = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
  return [{"run": name, "component": k, "weight": float(weights[k]), "test_mass": float(resp[:, k].mean()),
           "mean_norm": float(np.linalg.norm(np.asarray(means)[k])), "eig_min": float(eig[k, 0]),
           "eig_median": float(np.median(eig[k])), "eig_max": float(eig[k, -1]),
           "degenerate_directions": int(np.sum(eig[k] < threshold)), "dim": int(real.shape[1])}
          for k in range(len(weights))]


UNUSED_MASS = 1e-3  # a component with prior weight and test mass below this is counted, not listed


def components_table(components: list[dict]) -> str:
  """Markdown of :func:`component_rows`; per run, components holding neither
  prior weight nor test mass (both < :data:`UNUSED_MASS`) are one count row."""
  lines = [f"| run | component | prior weight | test mass | norm of mean | covariance eigenvalue min / median / max "
           f"| degenerate directions (< {DEGENERATE_RATIO:g} x mean test variance) |", "|---|---|---|---|---|---|---|"]
  for run in dict.fromkeys(c["run"] for c in components):
    rows = [c for c in components if c["run"] == run]
    used = [c for c in rows if max(c["weight"], c["test_mass"]) >= UNUSED_MASS]
    lines += [f"| {run} | {c['component']} | {c['weight']:.3f} | {c['test_mass']:.3f} | {c['mean_norm']:.2f} | "
              f"{c['eig_min']:.2e} / {c['eig_median']:.2e} / {c['eig_max']:.2e} | "
              f"{c['degenerate_directions']} of {c['dim']} |" for c in used]
    if len(used) < len(rows):
      lines.append(f"| {run} | {len(rows) - len(used)} unused (weight and test mass < {UNUSED_MASS:g}) | | | | | |")
  return "\n".join(lines) + "\n"


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
  joint, density, _ = embed_views(context.model, context.variables, config, context.mesh, train_x, test_x,
                                  settings.num_examples, settings.seed)
  rows, _ = sampler_rows(config.method, config, joint, density, settings.gmm_components, settings.seed)
  return {f"sampling_{_slug(r['sampler'])}_{metric}": float(r[metric]) for r in rows
          for metric in ("mmd2", "precision", "recall", "dispersion", "heldout_nll_per_dim")}


def check_sampling_settings(s, config) -> None:
  require(s.num_examples >= 2, "eval.evaluators.sampling.num_examples", s.num_examples, "must be >= 2")
  require(s.gmm_components >= 1, "eval.evaluators.sampling.gmm_components", s.gmm_components, "must be >= 1")
  require(s.seed >= 0, "eval.evaluators.sampling.seed", s.seed, "must be >= 0")


SAMPLING = register_evaluator(Evaluator("sampling", run_sampling,
                                        defaults={"num_examples": 2000, "gmm_components": 8, "seed": 0},
                                        check=check_sampling_settings,
                                        description="unconditional samples of latent densities vs post-hoc fits"))


def plot_nearest_images(samples: dict[str, np.ndarray], train_joint: np.ndarray, train_images: np.ndarray,
                        out_png: str, title: str) -> None:
  """What a density generates, for a person to look at: for each sampler (a
  row), the training image whose joint embedding is nearest to each sampled
  latent; the first row is training images drawn at random, for reference."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = {"real (random training images)": None, **samples}
  columns = max(len(v) for v in samples.values())
  fig, axes = plt.subplots(len(rows), columns, figsize=(1.1 * columns + 2.2, 1.2 * len(rows)), squeeze=False)
  reference = np.random.default_rng(0).choice(len(train_images), columns, replace=False)
  for r, (name, latents) in enumerate(rows.items()):
    picks = reference if latents is None else np.argmin(_sq_dists(latents, train_joint), axis=1)
    for c in range(columns):
      ax = axes[r, c]
      ax.axis("off")
      if c < len(picks):
        image = train_images[picks[c]]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    axes[r, 0].text(-0.15, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
  fig.suptitle(title, fontsize=9)
  fig.subplots_adjust(left=0.2, wspace=0.05, hspace=0.1)
  fig.savefig(out_png, dpi=90)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--run", action="append", required=True,
                      help="name=CONFIG[:variant],WORKDIR, or name=WORKDIR for the run's own config.json")
  parser.add_argument("--out", required=True)
  parser.add_argument("--num_examples", type=int, default=2000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--gmm_components", type=int, default=8,
                      help="components of the post-hoc Gaussian mixture (at least the method's K)")
  parser.add_argument("--previous_rows", default="",
                      help="the .jsonl of an earlier table: its rows of runs not named by --run are kept, in order, "
                           "first (for runs whose workdirs are not on this machine)")
  args = parser.parse_args(argv)
  rows, over_training, components = [], {}, []
  if args.previous_rows:
    names = {spec.partition("=")[0] for spec in args.run}
    with open(args.previous_rows) as f:
      rows = [r for r in map(json.loads, filter(str.strip, f)) if r["run"] not in names]
  for spec in args.run:
    name, _, rest = spec.partition("=")
    config_spec, _, workdir = rest.rpartition(",")
    if not name or not workdir or (not config_spec and "," in rest):
      parser.error(f"--run {spec!r} must look like name=CONFIG[:variant],WORKDIR or name=WORKDIR")
    start = time.time()
    if config_spec:
      config = load_config(config_spec)
    else:  # the config the run was trained with (overrides included)
      try:
        config = load_run_config(workdir)
      except FileNotFoundError as e:
        parser.error(f"--run {spec!r}: {e}")
    joint, density, train_images = run_embeddings(config, workdir, args.num_examples, args.seed)
    run_rows, samplers = sampler_rows(name, config, joint, density, args.gmm_components, args.seed)
    for row in run_rows:
      print(json.dumps(row), flush=True)
    rows += run_rows
    if density is not None:
      components += component_rows(name, density, config[config.method].covariance_type, joint["test"])
    picture_rng = np.random.default_rng(args.seed + 1)
    plot_nearest_images({n: sampler(picture_rng, 10) for n, (sampler, _) in samplers.items()}, joint["train"],
                        train_images, os.path.splitext(args.out)[0] + f"_nearest_{name}.png",
                        f"{name}: nearest training image of 10 sampled joint latents per sampler")
    print(f"{name}: {time.time() - start:.0f} s", flush=True)
    logged = os.path.join(workdir, "eval.jsonl")
    if density is not None and os.path.exists(logged) and any(
        "sampling_learned_density_recall" in r for r in read_metrics(logged)):
      over_training[name] = logged
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    f.write("| run | sampler | MMD² (RBF, median bandwidth) | k-NN precision | k-NN recall | dispersion | "
            "held-out NLL (nats/dim) |\n|---|---|---|---|---|---|---|\n")
    cell = lambda r, key, spec: format(r[key], spec) if key in r else "-"  # noqa: E731 (older rows lack some)
    for r in rows:
      f.write(f"| {r['run']} | {r['sampler']} | {r['mmd2']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
              f"{cell(r, 'dispersion', '.3f')} | {cell(r, 'heldout_nll_per_dim', '.3f')} |\n")
  with open(os.path.splitext(args.out)[0] + ".jsonl", "w") as f:
    for r in rows:
      f.write(json.dumps(r) + "\n")
  if components:
    with open(os.path.splitext(args.out)[0] + "_components.md", "w") as f:
      f.write(components_table(components))
    with open(os.path.splitext(args.out)[0] + "_components.jsonl", "w") as f:
      f.writelines(json.dumps(c) + "\n" for c in components)
  if over_training:  # runs trained with the sampling evaluator online: its numbers over training
    from gjax.eval.plots import plot_density_over_training
    plot_density_over_training(over_training, os.path.splitext(args.out)[0] + "_over_training.png")


if __name__ == "__main__":
  main()
