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

The study that trains one model per class and tabulates these scores is
``studies/one_class`` (``python -m studies.one_class.study``).
"""

from __future__ import annotations

import jax
import numpy as np

from gjax.eval.anomaly import auroc, gaussian_density_score, joint_nll_score, vje_anomaly_scores
from gjax.eval.features import extract_features
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.objectives import require
from gjax.train.input_pipeline import augment_config

SCORES = (
  "joint",
  "joint_kernel",
  "joint_log_det",
  "joint_radial",
  "neg_elbo",
  "joint_sampled",
  "joint_two_view",
  "variance_sum",
  "entropy",
  "gde_z",
  "gde_mu",
)
#: Reparameterised samples of the ``joint_sampled`` score (Eq. 39 averaged over the posterior).
SAMPLED_SCORE_SAMPLES = 16


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
    raise ValueError(
      f"the one-class scores need a head with a diagonal posterior; method {config.method!r} outputs no {missing}"
    )
  scores = vje_anomaly_scores(
    features["z"],
    features["mu"],
    features["var"],
    nu,
    num_samples=settings.samples,
    rng=jax.random.PRNGKey(config.seed) if settings.samples else None,
  )
  scores["joint_sampled"] = joint_nll_score(
    features["z"],
    features["mu"],
    features["var"],
    nu,
    num_samples=SAMPLED_SCORE_SAMPLES,
    rng=jax.random.PRNGKey(config.seed + 3),
  )
  if settings.views == 2:
    # Training semantics (Eq. 38): one view's posterior scores the other view's
    # embedding, averaged over both directions, on two random views per image.
    # The test split's images on the host: the one-class protocol's test sets
    # are small (CIFAR-10's 10,000 images, 30 MB).
    test_x, _ = context.split("test").head()
    augment = augment_config(config, test_x.shape[1:])
    view_1, view_2 = (
      extract_features(
        context.model,
        context.variables,
        test_x,
        augment,
        context.mesh,
        config.eval.batch_size,
        view_rng=jax.random.PRNGKey(config.seed + i),
      )
      for i in (1, 2)
    )
    scores["joint_two_view"] = 0.5 * sum(
      joint_nll_score(a["z"], a["mu"], a["var"], nu, z_obs=b["z"]) for a, b in ((view_1, view_2), (view_2, view_1))
    )
  for feature in ("z", "mu"):
    scores[f"gde_{feature}"] = gaussian_density_score(train_features[feature], features[feature])
  is_anomaly = context.labels[1] != normal
  test_diagnostics = posterior_diagnostics(*(np.asarray(features[k]) for k in ("mu", "var", "z")))
  return {f"auroc_{name}": auroc(np.asarray(score), is_anomaly) for name, score in scores.items()} | {
    f"test_{k}": float(v) for k, v in test_diagnostics.items()
  }


def check_one_class_settings(s, config) -> None:
  require(s.samples >= 0, "eval.evaluators.one_class.samples", s.samples, "must be >= 0")
  require(s.views in (1, 2), "eval.evaluators.one_class.views", s.views, "must be 1 or 2")
  classes = tuple(config.dataset.train_classes)
  require(
    len(classes) == 1,
    "dataset.train_classes",
    classes,
    "the one_class evaluator scores a run trained on exactly one class",
  )


ONE_CLASS = register_evaluator(
  Evaluator(
    "one_class",
    one_class_scores,
    defaults={"samples": 0, "views": 1},
    check=check_one_class_settings,
    description="one-class AUROC of VJE's scores (Section 5.3)",
  )
)
