"""The sampling study of the same-budget comparison: the ``sampling``
evaluator's rows (:mod:`gjax.eval.sampling`) for several finished runs in one
table, what each component of a learned mixture holds, and pictures.

  python -m studies.compare.sampling --out results/compare_fashion_mnist/sampling.md \
      --run gje=configs/fashion_mnist.py:method=gje,variant=compare,workdirs/compare/gje \
      --run gmje=workdirs/compare/gmje

(``name=CONFIG,WORKDIR``, or ``name=WORKDIR`` for the config the run saved.)
Besides the table: ``<out>.jsonl`` (rows), ``<out>_components.md`` /
``.jsonl`` (what each component of a learned mixture holds,
:func:`component_rows`), ``<out>_nearest_<run>.png`` (the nearest training
image of sampled latents, per sampler) and, for runs trained with the
evaluator online (``eval.online_evaluators`` naming ``sampling``),
``<out>_over_training.png`` (:func:`plot_density_over_training`). The rows of
an earlier table (``--previous_rows``, ``--previous_components``,
``--previous_logs``) are kept for runs not named by ``--run``; with them alone
the tables and the over-training figure are made again from committed files.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from gjax import math as gm  # noqa: E402
from gjax.eval.sampling import _sq_dists, embed_views, sampler_rows  # noqa: E402
from gjax.train.metrics import read_metrics  # noqa: E402
from studies import cli  # noqa: E402
from studies.plots import run_colors  # noqa: E402


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
  resp = np.asarray(gm.mixture_responsibilities(jnp.asarray(real, jnp.float32), logits, means, cov, covariance_type))
  eig = covariance_eigenvalues(cov, covariance_type, real.shape[1])
  threshold = DEGENERATE_RATIO * float(np.mean(np.var(real, axis=0)))
  weights = np.asarray(jax.nn.softmax(jnp.asarray(logits)))
  return [
    {
      "run": name,
      "component": k,
      "weight": float(weights[k]),
      "test_mass": float(resp[:, k].mean()),
      "mean_norm": float(np.linalg.norm(np.asarray(means)[k])),
      "eig_min": float(eig[k, 0]),
      "eig_median": float(np.median(eig[k])),
      "eig_max": float(eig[k, -1]),
      "degenerate_directions": int(np.sum(eig[k] < threshold)),
      "dim": int(real.shape[1]),
    }
    for k in range(len(weights))
  ]


UNUSED_MASS = 1e-3  # a component with prior weight and test mass below this is counted, not listed


def components_table(components: list[dict]) -> str:
  """Markdown of :func:`component_rows`; per run, components holding neither
  prior weight nor test mass (both < :data:`UNUSED_MASS`) are one count row."""
  lines = [
    f"| run | component | prior weight | test mass | norm of mean | covariance eigenvalue min / median / max "
    f"| degenerate directions (< {DEGENERATE_RATIO:g} x mean test variance) |",
    "|---|---|---|---|---|---|---|",
  ]
  for run in dict.fromkeys(c["run"] for c in components):
    rows = [c for c in components if c["run"] == run]
    used = [c for c in rows if max(c["weight"], c["test_mass"]) >= UNUSED_MASS]
    lines += [
      f"| {run} | {c['component']} | {c['weight']:.3f} | {c['test_mass']:.3f} | {c['mean_norm']:.2f} | "
      f"{c['eig_min']:.2e} / {c['eig_median']:.2e} / {c['eig_max']:.2e} | "
      f"{c['degenerate_directions']} of {c['dim']} |"
      for c in used
    ]
    if len(used) < len(rows):
      lines.append(f"| {run} | {len(rows) - len(used)} unused (weight and test mass < {UNUSED_MASS:g}) | | | | | |")
  return "\n".join(lines) + "\n"


def plot_nearest_images(
  samples: dict[str, np.ndarray], train_joint: np.ndarray, train_images: np.ndarray, out_png: str, title: str
) -> None:
  """What a density generates, for a person to look at: for each sampler (a
  row), the training image whose joint embedding is nearest to each sampled
  latent; the first row is training images drawn at random, for reference."""
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


SAMPLING_PANELS = (
  ("heldout_nll_per_dim", "held-out NLL (nats/dim)"),
  ("recall", "k-NN recall"),
  ("dispersion", "dispersion (1 = matched)"),
)


def _sampler_of(key: str, metric: str) -> str:
  """``sampling_learned_density_recall`` -> ``learned_density`` (for ``metric="recall"``)."""
  return key[len("sampling_") : -len(metric) - 1]


def plot_density_over_training(runs: dict[str, str], out_png: str) -> None:
  """The ``sampling`` evaluator's numbers over training for ``{label: eval.jsonl}``:
  held-out NLL, recall and dispersion of the learned density (solid) against
  the Gaussian and the GMM fitted afterwards to the same embeddings (dashed,
  dotted) at each evaluation (GJE issue: do the densities lag the embeddings?)."""
  fig, axes = plt.subplots(1, len(SAMPLING_PANELS), figsize=(5 * len(SAMPLING_PANELS), 3.8))
  styles = {"learned_density": "-", "gaussian_fitted_afterwards": "--"}
  for color, (label, path) in zip(run_colors(len(runs)), runs.items()):
    logged = [r for r in read_metrics(path) if "sampling_learned_density_recall" in r]
    if not logged:
      raise ValueError(f"{path} has no sampling_learned_density_* rows (run with the sampling evaluator online)")
    for ax, (metric, title) in zip(axes, SAMPLING_PANELS):
      samplers = sorted(
        {
          _sampler_of(k, metric)
          for k in logged[0]
          if k.startswith("sampling_") and k.endswith("_" + metric) and "train_mode" not in k and "floor" not in k
        }
      )
      for sampler in samplers:
        rows = [r for r in logged if f"sampling_{sampler}_{metric}" in r]
        ax.plot(
          [r.get("epoch", r["step"]) for r in rows],
          [r[f"sampling_{sampler}_{metric}"] for r in rows],
          styles.get(sampler, ":"),
          color=color,
          marker="o",
          markersize=3,
          label=f"{label}: {sampler.replace('_', ' ')}",
        )
      ax.set_title(title)
      ax.set_xlabel("epoch")
      ax.grid(alpha=0.3)
  axes[-1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)


def sampling_table(rows: list[dict]) -> str:
  """The Markdown table of the sampler rows (older rows lack the dispersion and NLL columns: ``-``)."""
  cell = lambda r, key, spec: format(r[key], spec) if key in r else "-"  # noqa: E731
  lines = [
    "| run | sampler | MMD² (RBF, median bandwidth) | k-NN precision | k-NN recall | dispersion | "
    "held-out NLL (nats/dim) |",
    "|---|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {r['run']} | {r['sampler']} | {r['mmd2']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} | "
    f"{cell(r, 'dispersion', '.3f')} | {cell(r, 'heldout_nll_per_dim', '.3f')} |"
    for r in rows
  ]
  return "\n".join(lines) + "\n"


def read_jsonl(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def define(values) -> None:
  flags.DEFINE_multi_string(
    "run",
    [],
    "name=CONFIG[:variant],WORKDIR, or name=WORKDIR for the run's own config.json (repeatable)",
    flag_values=values,
  )
  flags.DEFINE_string(
    "out", None, "the table (.md); the rows, components and pictures go beside it", flag_values=values
  )
  flags.DEFINE_integer("num_examples", 2000, "train and test images embedded per run", flag_values=values)
  flags.DEFINE_integer("seed", 0, "of the images drawn, the views and the samples", flag_values=values)
  flags.DEFINE_integer(
    "gmm_components", 8, "components of the post-hoc Gaussian mixture (at least the method's K)", flag_values=values
  )
  flags.DEFINE_string(
    "previous_rows",
    "",
    "the .jsonl of an earlier table: its rows of runs not named by --run "
    "are kept, in order, first (for runs whose workdirs are not on this machine)",
    flag_values=values,
  )
  flags.DEFINE_string(
    "previous_components",
    "",
    "the _components.jsonl of an earlier table: its rows of runs not named by --run are kept, in order, first",
    flag_values=values,
  )
  flags.DEFINE_multi_string(
    "previous_logs",
    [],
    "name=EVAL_JSONL (repeatable): the logged rows of a run trained "
    "with the sampling evaluator online whose workdir is not here (a copy of its eval.jsonl); "
    "drawn in <out>_over_training.png before the runs of --run",
    flag_values=values,
  )
  flags.mark_flag_as_required("out", flag_values=values)


def study(values) -> list[dict]:
  from gjax.cli import load_config
  from gjax.eval.registry import load_run_config

  if not values.run and not values.previous_rows:
    raise cli.StudyError("nothing to tabulate: give --run (a finished run), --previous_rows, or both")
  names = {spec.partition("=")[0] for spec in values.run}
  rows = [r for r in read_jsonl(values.previous_rows) if r["run"] not in names] if values.previous_rows else []
  components = (
    [c for c in read_jsonl(values.previous_components) if c["run"] not in names] if values.previous_components else []
  )
  over_training = {}
  for spec in values.previous_logs:
    name, sep, path = spec.partition("=")
    if not sep or not name or not os.path.exists(path):
      raise cli.StudyError(f"--previous_logs {spec!r} must be name=EVAL_JSONL of an existing file")
    over_training[name] = path
  stem = os.path.splitext(values.out)[0]
  for spec in values.run:
    name, _, rest = spec.partition("=")
    config_spec, _, workdir = rest.rpartition(",")
    if not name or not workdir or (not config_spec and "," in rest):
      raise cli.StudyError(f"--run {spec!r} must look like name=CONFIG[:variant],WORKDIR or name=WORKDIR")
    start = time.time()
    if config_spec:
      config = load_config(config_spec)
    else:  # the config the run was trained with (overrides included)
      try:
        config = load_run_config(workdir)
      except FileNotFoundError as e:
        raise cli.StudyError(f"--run {spec!r}: {e}") from None
    joint, density, train_images = run_embeddings(config, workdir, values.num_examples, values.seed)
    run_rows, samplers = sampler_rows(name, config, joint, density, values.gmm_components, values.seed)
    for row in run_rows:
      print(json.dumps(row), flush=True)
    rows += run_rows
    if density is not None:
      components += component_rows(name, density, config[config.method].covariance_type, joint["test"])
    picture_rng = np.random.default_rng(values.seed + 1)
    plot_nearest_images(
      {n: sampler(picture_rng, 10) for n, (sampler, _) in samplers.items()},
      joint["train"],
      train_images,
      f"{stem}_nearest_{name}.png",
      f"{name}: nearest training image of 10 sampled joint latents per sampler",
    )
    print(f"{name}: {time.time() - start:.0f} s", flush=True)
    logged = os.path.join(workdir, "eval.jsonl")
    if (
      density is not None
      and os.path.exists(logged)
      and any("sampling_learned_density_recall" in r for r in read_metrics(logged))
    ):
      over_training[name] = logged
  os.makedirs(os.path.dirname(os.path.abspath(values.out)), exist_ok=True)
  with open(values.out, "w") as f:
    f.write(sampling_table(rows))
  with open(stem + ".jsonl", "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
  if components:
    with open(stem + "_components.md", "w") as f:
      f.write(components_table(components))
    with open(stem + "_components.jsonl", "w") as f:
      f.writelines(json.dumps(c) + "\n" for c in components)
  if over_training:  # runs trained with the sampling evaluator online: its numbers over training
    plot_density_over_training(over_training, stem + "_over_training.png")
  return rows


def main(argv=None):
  return cli.run("studies.compare.sampling", define, study, argv)


if __name__ == "__main__":
  main()
