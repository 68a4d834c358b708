"""One-class anomaly detection protocol (VJE paper Section 5.3).

For each class ``c`` one model is pretrained on class ``c`` only
(``config.dataset.train_classes = (c,)``) and every test example is scored;
the test examples of the other classes are the anomalies. Scores (higher =
more anomalous): the joint NLL of Eq. 39 (directional + radial), the posterior
variance sum, and the posterior entropy; as a reference detector on the same features, the
Gaussian density of the normal class's training features (``gde_z``,
``gde_mu``; Sohn et al. 2021). The scoring is the registered ``one_class``
evaluator (settings ``config.eval.evaluators.one_class``): with ``views = 2``
Eq. 39 is also evaluated as in training, one random view's posterior scoring
the other view's embedding (``joint_two_view``); Eq. 39 is evaluated at the
posterior mean (``samples = 0``) or averaged over that many reparameterised
samples (``> 0``).

  python -m gjax.eval.one_class --config configs/vje_fashion_mnist.py:one_class \
      --workdir workdirs/one_class --grid vje.nu=0.5,1,3

Runs are resumable (one sub-directory per grid point and class, through
:func:`gjax.eval.sweep.run_sweep`); ``results.md`` holds the per-class rows
and ``summary.md`` the mean AUROC per grid point.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Sequence

import jax
import numpy as np

import ml_collections

from gjax import data as gdata
from gjax.eval.anomaly import auroc, gaussian_density_score, joint_nll_score, vje_anomaly_scores
from gjax.eval.features import extract_features
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.eval.sweep import grid_points, markdown_table, run_sweep
from gjax.train.input_pipeline import augment_config, load_in_memory
from gjax.train.metrics import read_metrics
from gjax.objectives import require

SCORES = ("joint", "joint_kernel", "joint_log_det", "joint_radial", "neg_elbo", "joint_sampled", "joint_two_view",
          "variance_sum", "entropy", "gde_z", "gde_mu")
#: Reparameterised samples of the ``joint_sampled`` score (Eq. 39 averaged over the posterior).
SAMPLED_SCORE_SAMPLES = 16
#: The training diagnostics kept per row (the last logged window of train.jsonl).
TRAIN_DIAGNOSTICS = ("loss", "directional_kernel", "directional_log_det", "radial", "kl", "var_mean", "var_cv",
                     "z_std_min", "active_units", "mu_spread_ratio", "mu_cosine", "z_cosine", "z_dead_channels")


def one_class_scores(context, settings) -> dict[str, float]:
  """The ``one_class`` evaluator, for a run trained on one class
  (``config.dataset.train_classes = (c,)``) with a diagonal-posterior head:
  the AUROC of each score (:data:`SCORES`) at separating the test split's other
  classes from ``c``, and the posterior diagnostics on the test split
  (``test_*``). ``settings``: ``samples`` (Eq. 39 at the posterior mean, 0, or
  averaged over that many samples), ``views`` (2: also the two-view score)."""
  from gjax.math import posterior_diagnostics

  config = context.config
  (normal,) = config.dataset.train_classes
  nu = config[config.method].nu
  features, train_features = context.features("test"), context.features("train")  # train: the normal class
  missing = [k for k in ("mu", "var") if k not in features]
  if missing:
    raise ValueError(f"the one-class scores need a head with a diagonal posterior; method {config.method!r} "
                     f"outputs no {missing}")
  scores = vje_anomaly_scores(features["z"], features["mu"], features["var"], nu, num_samples=settings.samples,
                              rng=jax.random.PRNGKey(config.seed) if settings.samples else None)
  scores["joint_sampled"] = joint_nll_score(features["z"], features["mu"], features["var"], nu,
                                            num_samples=SAMPLED_SCORE_SAMPLES,
                                            rng=jax.random.PRNGKey(config.seed + 3))
  if settings.views == 2:
    # Training semantics (Eq. 38): one view's posterior scores the other view's
    # embedding, averaged over both directions, on two random views per image.
    # The test split's images on the host: the one-class protocol's test sets
    # are small (CIFAR-10's 10,000 images, 30 MB).
    test_x, _ = context.split("test").head()
    augment = augment_config(config, test_x.shape[1:])
    view_1, view_2 = (extract_features(context.model, context.variables, test_x, augment, context.mesh,
                                       config.eval.batch_size, view_rng=jax.random.PRNGKey(config.seed + i))
                      for i in (1, 2))
    scores["joint_two_view"] = 0.5 * sum(
        joint_nll_score(a["z"], a["mu"], a["var"], nu, z_obs=b["z"]) for a, b in ((view_1, view_2), (view_2, view_1)))
  for feature in ("z", "mu"):
    scores[f"gde_{feature}"] = gaussian_density_score(train_features[feature], features[feature])
  is_anomaly = context.labels[1] != normal
  test_diagnostics = posterior_diagnostics(*(np.asarray(features[k]) for k in ("mu", "var", "z")))
  return ({f"auroc_{name}": auroc(np.asarray(score), is_anomaly) for name, score in scores.items()}
          | {f"test_{k}": float(v) for k, v in test_diagnostics.items()})


def check_one_class_settings(s, config) -> None:
  require(s.samples >= 0, "eval.evaluators.one_class.samples", s.samples, "must be >= 0")
  require(s.views in (1, 2), "eval.evaluators.one_class.views", s.views, "must be 1 or 2")
  classes = tuple(config.dataset.train_classes)
  require(len(classes) == 1, "dataset.train_classes", classes,
          "the one_class evaluator scores a run trained on exactly one class")


ONE_CLASS = register_evaluator(Evaluator("one_class", one_class_scores, defaults={"samples": 0, "views": 1},
                                         check=check_one_class_settings,
                                         description="one-class AUROC of VJE's scores (Section 5.3)"))


def score_one_class(config, workdir: str) -> dict[str, float]:
  """Pretrains on ``config.dataset.train_classes`` (one class) and returns the
  ``one_class`` evaluator's results (settings: ``config.eval.evaluators.one_class``,
  else its defaults), the training diagnostics at the end of training
  (``train_*``) and the wall time of the row."""
  from gjax.eval.evaluate import train_and_evaluate
  from gjax.eval.registry import EvalContext
  from gjax.eval.splits import eval_splits
  from gjax.train.state import build_method

  start = time.time()
  settings = (config.eval.evaluators.one_class if "one_class" in config.eval.evaluators.keys()
              else ml_collections.ConfigDict(dict(ONE_CLASS.defaults)))
  check_one_class_settings(settings, config)
  summary = train_and_evaluate(config, workdir)
  if summary.get("preempted"):
    # A stopped run is not a result: no row is written, the sweep ends, and
    # the same command resumes this class from its checkpoint.
    raise SystemExit(f"one-class training in {workdir} was stopped by {summary['preempted']} at step "
                     f"{summary['final_step']}; rerun the same command to resume")
  train_seconds = time.time() - start
  eval_config = config.copy_and_resolve_references()
  with eval_config.unlocked():
    eval_config.eval.num_train_examples = -1  # every training image of the normal class
  context = EvalContext(model=build_method(config)[2], variables=summary["state"].variables, config=eval_config,
                        mesh=gdata.data_mesh(), splits=eval_splits(eval_config))
  results = one_class_scores(context, settings)
  last = read_metrics(os.path.join(workdir, "train.jsonl"))[-1]
  return (results | {"final_loss": last["loss"]}
          | {f"train_{k}": last[k] for k in TRAIN_DIAGNOSTICS if k in last}
          | {"train_seconds": train_seconds, "wall_seconds": time.time() - start})


def run_one_class(config, root: str, grid: Mapping[str, Sequence] | None = None,
                  classes: Sequence[int] | None = None) -> dict[str, Any]:
  """All classes (or ``classes``) at every point of ``grid``; writes the tables."""
  if config.method != "vje":
    raise ValueError(f"the one-class scores are VJE's posterior scores; config.method={config.method!r}")
  if classes is None:
    _, labels = load_in_memory(config, "test")
    classes = sorted(np.unique(labels).tolist())
  full_grid = dict(grid or {})
  full_grid["dataset.train_classes"] = [(int(c),) for c in classes]
  rows = run_sweep(config, full_grid, root, score_one_class)
  summary_rows = []
  for point in grid_points(grid or {}) if grid else [{}]:
    matching = [r for r in rows if all(r[k] == v for k, v in point.items())]
    summary_rows.append({**point, **{f"mean_auroc_{s}": float(np.mean([r[f"auroc_{s}"] for r in matching]))
                                     for s in SCORES if f"auroc_{s}" in matching[0]}, "classes": len(matching)})
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write(markdown_table(summary_rows))
  with open(os.path.join(root, "summary.json"), "w") as f:
    json.dump(summary_rows, f, indent=2, default=str)
  return {"rows": rows, "summary": summary_rows}


def raw_pixel_reference(config, classes: Sequence[int] | None = None, knn_k: int = 5) -> list[dict[str, float]]:
  """The protocol with no learned features, as a check on the protocol itself:
  per normal class, an RBF OC-SVM (scikit-learn, ``gamma="scale"``,
  ``nu=0.1``; the published "raw-pixel OC-SVM" row), a Gaussian density
  (:func:`gaussian_density_score`) and the mean distance to the ``knn_k``
  nearest normal training images, all on raw pixels scaled to [0, 1]."""
  from sklearn.svm import OneClassSVM

  test_x, test_y = load_in_memory(config, "test")
  if classes is None:
    classes = sorted(np.unique(test_y).tolist())
  flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
  test = flat(test_x)
  rows = []
  for c in classes:
    config = config.copy_and_resolve_references()
    config.dataset.train_classes = (int(c),)
    train = flat(load_in_memory(config, "train")[0])
    is_anomaly = test_y != c
    svm = OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(train)
    dist2 = (np.sum(test ** 2, 1)[:, None] - 2 * test @ train.T + np.sum(train ** 2, 1)[None, :])
    knn = np.mean(np.sqrt(np.maximum(np.partition(dist2, knn_k, axis=1)[:, :knn_k], 0)), axis=1)
    rows.append({"class": int(c),
                 "auroc_ocsvm": auroc(-svm.decision_function(test), is_anomaly),
                 "auroc_gde": auroc(np.asarray(gaussian_density_score(train, test)), is_anomaly),
                 f"auroc_knn{knn_k}": auroc(knn, is_anomaly)})
  return rows


if __name__ == "__main__":
  from absl import flags

  from gjax.cli import run_with_config
  from gjax.eval.sweep import parse_grid

  grid_flag = flags.DEFINE_multi_string("grid", [], "field=v1,v2,... (repeatable), e.g. vje.nu=0.5,1,3")
  classes_flag = flags.DEFINE_list("classes", None, "normal classes to run (default: all)")
  raw_flag = flags.DEFINE_bool("raw_pixel_reference", False,
                               "instead of training, score raw pixels (OC-SVM, Gaussian, k-NN) into "
                               "WORKDIR/raw_pixel_reference.md")

  def main(config, workdir):
    classes = [int(c) for c in classes_flag.value] if classes_flag.value else None
    if not raw_flag.value:
      return run_one_class(config, workdir, parse_grid(grid_flag.value), classes)
    rows = raw_pixel_reference(config, classes)
    means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "class"}
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "raw_pixel_reference.md"), "w") as f:
      f.write(markdown_table(rows + [{"class": "mean", **means}]))
    print(json.dumps(means))
    return rows

  run_with_config(main, "Root directory of the protocol (one sub-directory per grid point and class).")
