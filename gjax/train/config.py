"""The training configuration: defaults, schema and validation.

Every config in ``configs/`` starts from :func:`base_config` and changes fields;
the dict is locked, so a misspelt field (``--config.optim.lr=...``) is
rejected by ``config_flags`` and by :func:`validate_config`. Validation runs
before any data is read or any model is built, and every error names the field.
"""

from __future__ import annotations

import math
import os
import re

import ml_collections

from gjax.data.datasets import spec_from_config
from gjax.math.vje import KL_CONVENTIONS
from gjax.models.heads import ACTIVATIONS
from gjax.models.resnet import ARCHS, STEMS
from gjax.objectives import registered_methods

COMPUTE_DTYPES = ("float32", "bfloat16")
EVALUATORS = ("knn", "linear_probe", "posterior")
LR_SCALINGS = ("linear", "sqrt", "none")


#: TFDS split expressions: names, slices, unions ("train", "train[:90%]", "unlabelled+train").
TFDS_SPLIT_PATTERN = r"[A-Za-z0-9_]+(\[[^\]]*\])?(\+[A-Za-z0-9_]+(\[[^\]]*\])?)*"


def base_config() -> ml_collections.ConfigDict:
  """Defaults shared by every method and data set (VJE paper Section 5.1-5.2)."""
  c = ml_collections.ConfigDict()
  c.method = "vje"
  c.seed = 0

  c.dataset = ml_collections.ConfigDict()
  # A registered data set (gjax.data.datasets: fashion_mnist, digits, synthetic,
  # cifar10, cifar100, stl10, imagenet2012) or "tfds:NAME", any prepared TFDS
  # data set, described by dataset.tfds.
  c.dataset.name = "fashion_mnist"
  c.dataset.module = ""  # a module to import first (one that registers its own data set)
  c.dataset.data_dir = ""  # "" = the loader's default location
  c.dataset.num_train_examples = -1  # -1 = all; >0 takes a fixed subset (smoke runs)
  c.dataset.train_classes = ()  # () = all; e.g. (3,) trains on class 3 only (one-class protocol)
  c.dataset.synthetic_image_size = 32  # only for name="synthetic"
  c.dataset.synthetic_channels = 3
  c.dataset.tfds = ml_collections.ConfigDict()  # only for name="tfds:NAME"
  c.dataset.tfds.image_key = "image"
  c.dataset.tfds.label_key = "label"
  c.dataset.tfds.pretrain_split = "train"  # TFDS split strings, e.g. "train+extra" or "fit[:90%]"
  c.dataset.tfds.train_split = "train"  # labelled split of the k-NN / linear probes
  c.dataset.tfds.eval_split = "test"
  c.dataset.tfds.image_size = 0  # side of the views; 0 = the stored side (images of one size)
  c.dataset.tfds.resize = False  # resize + square-crop each image on the host to image_size (varied sizes)
  c.dataset.tfds.blur = False  # Gaussian blur in the views (MoCo v2; off at 32x32 and below)
  c.dataset.tfds.mean = ()  # per-channel mean and std on the [0, 1] scale: required
  c.dataset.tfds.std = ()

  c.model = ml_collections.ConfigDict()
  c.model.encoder = "resnet18"
  c.model.stem = "cifar"
  c.model.width_multiplier = 1.0
  c.model.compute_dtype = "float32"  # "bfloat16" on accelerators
  c.model.bottleneck = 128  # VJE inference network: 128 for ResNet-18, 512 for ResNet-50
  c.model.activation = "relu"
  c.model.projector = False  # optional 2-layer projector with LayerNorm (Section 5.2)
  c.model.projector_hidden = 2048
  c.model.projector_dim = 2048
  c.model.projector_layers = 2
  c.model.projector_norm = "layer"  # "batch" for the SimSiam / VICReg / SimCLR projectors
  c.model.projector_norm_last = False  # SimSiam normalises its projector's output too

  c.vje = ml_collections.ConfigDict()
  c.vje.nu = 3.0  # Student-t degrees of freedom; math.inf = Gaussian limit
  c.vje.beta = 1.0
  c.vje.use_directional = True
  c.vje.use_radial = True
  c.vje.use_kl = True
  # "mean": beta * (KL_1 + KL_2) / 2 (Eq. 38, Algorithm 4); "sum": beta * (KL_1 + KL_2) (Eq. 9-10).
  c.vje.kl_convention = "mean"
  # > 0: floor each dimension's batch-mean KL at this many nats (free bits; not in the paper).
  c.vje.free_bits = 0.0

  # GJE / GMJE family (design doc gje-formulation.md). K = 1 with "full" is GJE.
  for method, components in (("gje", 1), ("gmje", 8)):
    section = ml_collections.ConfigDict()
    section.num_components = components
    section.covariance_type = "full"
    section.marginal_weight = 1.0  # λ of the sliced Epps-Pulley anti-collapse loss
    section.num_slices = 256
    section.symmetric = True
    section.fit = "gradient"  # "em": GMJE-EM, stepwise EM on stop-gradient embeddings
    section.em_step_size = 0.05  # ρ of the running sufficient statistics (fit = "em")
    c[method] = section
  c.gmje_mdn = ml_collections.ConfigDict()
  c.gmje_mdn.num_components = 8
  c.gmje_mdn.hidden = 512
  c.gmje_mdn.marginal_weight = 1.0
  c.gmje_mdn.num_slices = 256
  c.gmje_mdn.symmetric = True
  c.gmje_mdn.stop_gradient_target = True
  c.gmje_gng = ml_collections.ConfigDict()  # Fritzke's defaults; capacity = the most nodes
  c.gmje_gng.capacity = 64
  c.gmje_gng.epsilon_winner = 0.05
  c.gmje_gng.epsilon_neighbor = 0.006
  c.gmje_gng.max_age = 50
  c.gmje_gng.insert_every = 100
  c.gmje_gng.insert_error_decay = 0.5
  c.gmje_gng.error_decay = 0.995
  c.gmje_gng.marginal_weight = 1.0
  c.gmje_gng.num_slices = 256
  c.gmje_gng.symmetric = True
  c.gmje_smc = ml_collections.ConfigDict()  # defaults: the MoCo-queue limit
  c.gmje_smc.bank_size = 4096
  c.gmje_smc.temperature = 0.2
  c.gmje_smc.reweight_strength = 0.0
  c.gmje_smc.resample_threshold = 0.0
  c.gmje_smc.move_std = 0.0
  c.gmje_smc.symmetric = True
  c.gje_naive = ml_collections.ConfigDict()
  c.gje_naive.ridge = 0.0
  c.gje_naive.marginal_weight = 0.0
  c.gje_naive.num_slices = 256
  c.gje_naive.symmetric = True

  # Baselines on the same trainer (gjax/objectives/{jepa,simsiam,vicreg,simclr,moco,sigreg}.py).
  c.jepa = ml_collections.ConfigDict()
  c.jepa.predictor_hidden = 512
  c.jepa.scale = 1.0  # λ of N(z_j; g(z_i), λI): the loss is ||z_j - g(z_i)||² / (2λ)
  c.simsiam = ml_collections.ConfigDict()
  c.simsiam.predictor_hidden = 512
  c.vicreg = ml_collections.ConfigDict()
  c.vicreg.invariance_weight = 25.0
  c.vicreg.variance_weight = 25.0
  c.vicreg.covariance_weight = 1.0
  c.vicreg.std_target = 1.0
  c.simclr = ml_collections.ConfigDict()
  c.simclr.temperature = 0.2
  c.moco = ml_collections.ConfigDict()
  c.moco.bank_size = 4096
  c.moco.temperature = 0.2
  c.moco.symmetric = True
  c.sigreg = ml_collections.ConfigDict()
  c.sigreg.marginal_weight = 1.0
  c.sigreg.num_slices = 256

  c.augment = ml_collections.ConfigDict()
  c.augment.crop_scale_min = 0.2
  c.augment.blur = "auto"  # "auto": the data set's preset (off at <= 32x32); "on" / "off"

  c.optim = ml_collections.ConfigDict()
  c.optim.base_learning_rate = 0.05
  c.optim.lr_scaling = "linear"  # lr = base * (batch / reference_batch_size)
  c.optim.reference_batch_size = 256
  c.optim.momentum = 0.9
  c.optim.weight_decay = 5e-6
  c.optim.warmup_epochs = 0.0
  c.optim.grad_clip_norm = 0.0  # > 0: clip the global gradient norm to this before the update

  c.batch_size = 256  # global, over all devices and processes
  c.num_epochs = 800.0
  c.num_train_steps = -1  # > 0 overrides num_epochs

  c.eval = ml_collections.ConfigDict()
  c.eval.evaluators = ("knn", "linear_probe", "posterior")  # what eval.py runs
  c.eval.results_path = ""  # where eval.py writes its results; "" = <workdir>/eval_results.json
  c.eval.online_evaluators = ("knn", "posterior")  # what runs every eval.every_epochs
  c.eval.knn_k = 30  # VJE paper's k-NN protocol (plain majority vote)
  c.eval.knn_weighted_k = 200  # the common weighted variant (Wu et al. 2018)
  c.eval.knn_temperature = 0.1
  c.eval.batch_size = 512
  c.eval.num_train_examples = -1  # k-NN memory bank size; -1 = the whole train split
  c.eval.linear_probe_epochs = 100  # VJE paper's linear protocol
  c.eval.linear_probe_learning_rate = 0.05
  c.eval.anomaly_samples = 0  # Eq. 39 at the posterior mean (0) or averaged over samples
  c.eval.anomaly_views = 1  # 2: also score one random view's posterior against another view
  c.eval.every_epochs = 0.0  # > 0: k-NN evaluation during pretraining (eval.jsonl; VJE Fig. 3)

  c.log_every_steps = 50
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  # A step with a non-finite loss, gradient or update never changes the state;
  # "stop" ends the run naming the step, "skip" goes on (at most
  # max_consecutive_skips such steps in a row).
  c.nonfinite_policy = "stop"
  c.max_consecutive_skips = 10
  # A resume whose config changes what is computed (model, method, data, batch,
  # schedule, seed, ...) stops with the list of changes, unless this is True:
  # then it continues and the earlier config is kept in config_history.jsonl.
  c.resume_with_changed_config = False
  c.lock()
  return c


def learning_rate(config) -> float:
  """Peak learning rate from the base rate and the global batch size.

  ``linear`` (default, the rule of Goyal et al. and the VJE/SimSiam recipes):
  ``base * batch / reference``; ``sqrt``: ``base * sqrt(batch / reference)``;
  ``none``: ``base``.
  """
  ratio = config.batch_size / config.optim.reference_batch_size
  return config.optim.base_learning_rate * {
      "linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[config.optim.lr_scaling]


def _require(ok: bool, field: str, value, what: str) -> None:
  if not ok:
    raise ValueError(f"config.{field}={value!r} is invalid: {what}")


#: Float fields for which ``math.inf`` is meaningful (the Gaussian limit).
INFINITY_ALLOWED = ("vje.nu",)


def config_fields(tree, prefix: str = ""):
  """``(dotted name, value)`` of every leaf field of a config (or nested dict)."""
  for key, value in tree.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from config_fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _check_schema(config) -> None:
  """Every field of ``config`` exists in :func:`base_config` with the same type.

  ints are accepted where floats are expected; floats must be finite (except
  :data:`INFINITY_ALLOWED`); tuples may also be lists. A config built by hand
  (an unlocked dict, a ``config.json`` read back) is held to the same schema
  as one changed through ``config_flags``.
  """
  reference = dict(config_fields(base_config()))
  given = dict(config_fields(config))
  unknown = sorted(set(given) - set(reference))
  _require(not unknown, unknown[0] if unknown else "", given.get(unknown[0]) if unknown else None,
           f"unknown field(s) {unknown}")
  missing = sorted(set(reference) - set(given))
  _require(not missing, missing[0] if missing else "", None, f"missing field(s) {missing}")
  for name, default in reference.items():
    value = given[name]
    if isinstance(default, bool):
      ok, what = isinstance(value, bool), "must be a bool"
    elif isinstance(default, int):
      ok, what = isinstance(value, int) and not isinstance(value, bool), "must be an int"
    elif isinstance(default, float):
      ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "must be a number"
      if ok and not math.isfinite(value) and not (name in INFINITY_ALLOWED and value == math.inf):
        ok, what = False, "must be finite"
    elif isinstance(default, str):
      ok, what = isinstance(value, str), "must be a string"
    elif isinstance(default, (tuple, list)):
      ok, what = isinstance(value, (tuple, list)), "must be a tuple"
    else:
      raise TypeError(f"base_config field {name} has an unsupported type {type(default).__name__}")
    _require(ok, name, value, what)


def validate_config(config, num_devices: int, process_count: int = 1) -> None:
  """Checks every field's type and range; raises ``ValueError`` naming the field.

  Unknown and missing fields are errors too (:func:`_check_schema`).
  """
  _check_schema(config)
  _require(config.method in registered_methods(), "method", config.method,
           f"must be one of {registered_methods()}")
  _require(config.seed >= 0, "seed", config.seed, "must be >= 0")
  d = config.dataset
  try:
    spec = spec_from_config(d)
  except ValueError as e:
    raise ValueError(f"config.dataset.name={d.name!r} is invalid: {e}") from None
  t = d.tfds
  for field in ("pretrain_split", "train_split", "eval_split"):
    _require(bool(re.fullmatch(TFDS_SPLIT_PATTERN, t[field])), f"dataset.tfds.{field}", t[field],
             "must be a TFDS split expression such as 'train', 'train[:90%]' or 'unlabelled+train'")
  for field in ("image_key", "label_key"):
    _require(bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_/]*", t[field])), f"dataset.tfds.{field}", t[field],
             "must be a TFDS feature name (letters, digits, '_', '/' for nested features)")
  for field in ("mean", "std"):
    _require(all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in t[field]),
             f"dataset.tfds.{field}", t[field], "must be a tuple of finite numbers (one per channel)")
  _require(len(t.mean) == len(t.std) and all(v > 0 for v in t.std), "dataset.tfds.std", t.std,
           f"must have as many values as dataset.tfds.mean={tuple(t.mean)}, all > 0")
  _require(not d.tfds.resize or d.tfds.image_size > 0, "dataset.tfds.image_size", d.tfds.image_size,
           "must be > 0 with dataset.tfds.resize=True (the side the host resizes to)")
  _require(d.tfds.image_size >= 0, "dataset.tfds.image_size", d.tfds.image_size, "must be >= 0")
  _require(not d.train_classes or spec.source == "memory", "dataset.train_classes", d.train_classes,
           f"is supported for the in-memory data sets, not for the TFDS data set {d.name!r}")
  _require(d.num_train_examples == -1 or d.num_train_examples > 0, "dataset.num_train_examples",
           d.num_train_examples, "must be -1 (all) or > 0")
  _require(all(isinstance(k, int) and k >= 0 for k in d.train_classes), "dataset.train_classes",
           d.train_classes, "must be a tuple of non-negative class indices")
  for field in ("synthetic_image_size", "synthetic_channels"):
    _require(d[field] >= 1, f"dataset.{field}", d[field], "must be >= 1")
  if d.data_dir:
    _require(os.path.isdir(d.data_dir), "dataset.data_dir", d.data_dir, "is not a directory")

  m = config.model
  _require(m.encoder in ARCHS, "model.encoder", m.encoder, f"must be one of {sorted(ARCHS)}")
  _require(m.stem in STEMS, "model.stem", m.stem, f"must be one of {STEMS}")
  _require(m.width_multiplier > 0, "model.width_multiplier", m.width_multiplier, "must be > 0")
  _require(m.compute_dtype in COMPUTE_DTYPES, "model.compute_dtype", m.compute_dtype,
           f"must be one of {COMPUTE_DTYPES}")
  _require(m.activation in ACTIVATIONS, "model.activation", m.activation, f"must be one of {sorted(ACTIVATIONS)}")
  _require(m.projector_norm in ("layer", "batch", "none"), "model.projector_norm", m.projector_norm,
           "must be 'layer', 'batch' or 'none'")
  for field in ("bottleneck", "projector_hidden", "projector_dim", "projector_layers"):
    _require(m[field] >= 1, f"model.{field}", m[field], "must be >= 1")

  v = config.vje
  _require(v.nu > 0, "vje.nu", v.nu, "must be > 0 (math.inf for the Gaussian limit)")
  _require(v.beta >= 0 and math.isfinite(v.beta), "vje.beta", v.beta, "must be finite and >= 0")
  _require(v.kl_convention in KL_CONVENTIONS, "vje.kl_convention", v.kl_convention,
           f"must be one of {KL_CONVENTIONS}")
  _require(v.free_bits >= 0, "vje.free_bits", v.free_bits, "must be >= 0 (0 = off)")
  _require(v.use_directional or v.use_radial or v.use_kl, "vje.use_*", False,
           "at least one of use_directional, use_radial, use_kl must be True")

  for method in ("gje", "gmje"):
    g = config[method]
    _require(g.num_components >= 1, f"{method}.num_components", g.num_components, "must be >= 1 (K)")
    _require(g.covariance_type in ("full", "diag", "isotropic"), f"{method}.covariance_type",
             g.covariance_type, "must be 'full', 'diag' or 'isotropic'")
    _require(g.marginal_weight >= 0, f"{method}.marginal_weight", g.marginal_weight, "must be >= 0")
    _require(g.num_slices >= 1, f"{method}.num_slices", g.num_slices, "must be >= 1")
    _require(g.fit in ("gradient", "em"), f"{method}.fit", g.fit, "must be 'gradient' or 'em'")
    _require(0 < g.em_step_size <= 1, f"{method}.em_step_size", g.em_step_size, "must be in (0, 1]")
  mdn = config.gmje_mdn
  _require(mdn.num_components >= 1, "gmje_mdn.num_components", mdn.num_components, "must be >= 1 (K)")
  _require(mdn.hidden >= 1, "gmje_mdn.hidden", mdn.hidden, "must be >= 1")
  _require(mdn.marginal_weight >= 0, "gmje_mdn.marginal_weight", mdn.marginal_weight, "must be >= 0")
  _require(mdn.num_slices >= 1, "gmje_mdn.num_slices", mdn.num_slices, "must be >= 1")
  gng = config.gmje_gng
  _require(gng.capacity >= 2, "gmje_gng.capacity", gng.capacity, "must be >= 2 (the GNG start size)")
  for field in ("epsilon_winner", "epsilon_neighbor", "insert_error_decay", "error_decay"):
    _require(0 < gng[field] <= 1, f"gmje_gng.{field}", gng[field], "must be in (0, 1]")
  for field in ("max_age", "insert_every", "num_slices"):
    _require(gng[field] >= 1, f"gmje_gng.{field}", gng[field], "must be >= 1")
  _require(gng.marginal_weight >= 0, "gmje_gng.marginal_weight", gng.marginal_weight, "must be >= 0")
  for field in ("jepa.predictor_hidden", "simsiam.predictor_hidden", "moco.bank_size", "sigreg.num_slices",
                "gje_naive.num_slices", "gmje_smc.bank_size"):
    section, name = field.split(".")
    _require(config[section][name] >= 1, field, config[section][name], "must be >= 1")
  for field in ("jepa.scale", "simclr.temperature", "moco.temperature", "vicreg.std_target"):
    section, name = field.split(".")
    _require(config[section][name] > 0, field, config[section][name], "must be > 0")
  for field in ("vicreg.invariance_weight", "vicreg.variance_weight", "vicreg.covariance_weight",
                "sigreg.marginal_weight"):
    section, name = field.split(".")
    _require(config[section][name] >= 0, field, config[section][name], "must be >= 0")
  _require(config.method != "moco" or config.moco.bank_size >= config.batch_size, "moco.bank_size",
           config.moco.bank_size, f"the queue must hold at least one batch ({config.batch_size})")
  smc = config.gmje_smc
  _require(config.method != "gmje_smc" or smc.bank_size >= config.batch_size, "gmje_smc.bank_size", smc.bank_size,
           f"the memory bank must hold at least one batch ({config.batch_size})")
  _require(smc.temperature > 0, "gmje_smc.temperature", smc.temperature, "must be > 0")
  _require(smc.reweight_strength >= 0, "gmje_smc.reweight_strength", smc.reweight_strength, "must be >= 0")
  _require(0 <= smc.resample_threshold <= 1, "gmje_smc.resample_threshold", smc.resample_threshold,
           "must be in [0, 1]")
  _require(smc.move_std >= 0, "gmje_smc.move_std", smc.move_std, "must be >= 0")
  _require(config.gje.num_components == 1, "gje.num_components", config.gje.num_components,
           "GJE is the K = 1 case; use method 'gmje' for K > 1")
  _require(config.gje_naive.ridge >= 0, "gje_naive.ridge", config.gje_naive.ridge, "must be >= 0")
  _require(config.gje_naive.marginal_weight >= 0, "gje_naive.marginal_weight",
           config.gje_naive.marginal_weight, "must be >= 0")

  a = config.augment
  _require(0 < a.crop_scale_min <= 1, "augment.crop_scale_min", a.crop_scale_min, "must be in (0, 1]")
  _require(a.blur in ("auto", "on", "off"), "augment.blur", a.blur, "must be 'auto', 'on' or 'off'")

  o = config.optim
  _require(o.base_learning_rate > 0, "optim.base_learning_rate", o.base_learning_rate, "must be > 0")
  _require(o.lr_scaling in LR_SCALINGS, "optim.lr_scaling", o.lr_scaling, f"must be one of {LR_SCALINGS}")
  _require(o.reference_batch_size > 0, "optim.reference_batch_size", o.reference_batch_size, "must be > 0")
  _require(0 <= o.momentum < 1, "optim.momentum", o.momentum, "must be in [0, 1)")
  _require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
  _require(o.warmup_epochs >= 0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
  _require(o.grad_clip_norm >= 0, "optim.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0 = no clipping)")

  e = config.eval
  for field in ("knn_k", "knn_weighted_k", "batch_size"):
    _require(e[field] >= 1, f"eval.{field}", e[field], "must be >= 1")
  for field in ("evaluators", "online_evaluators"):
    unknown = [name for name in e[field] if name not in EVALUATORS]
    _require(not unknown, f"eval.{field}", tuple(e[field]), f"unknown evaluator(s) {unknown}; known: {EVALUATORS}")
  _require(e.linear_probe_epochs >= 1, "eval.linear_probe_epochs", e.linear_probe_epochs, "must be >= 1")
  _require(e.linear_probe_learning_rate > 0, "eval.linear_probe_learning_rate",
           e.linear_probe_learning_rate, "must be > 0")
  _require(e.anomaly_views in (1, 2), "eval.anomaly_views", e.anomaly_views, "must be 1 or 2")
  _require(e.anomaly_samples >= 0, "eval.anomaly_samples", e.anomaly_samples, "must be >= 0")
  _require(e.every_epochs >= 0, "eval.every_epochs", e.every_epochs, "must be >= 0 (0 = off)")
  if e.results_path:
    _require(e.results_path.endswith(".json") and os.path.isdir(os.path.dirname(os.path.abspath(e.results_path))),
             "eval.results_path", e.results_path, "must be a .json file in an existing directory ('' = the workdir's)")
  _require(e.knn_temperature > 0, "eval.knn_temperature", e.knn_temperature, "must be > 0")
  _require(e.num_train_examples == -1 or e.num_train_examples > 0, "eval.num_train_examples",
           e.num_train_examples, "must be -1 (all) or > 0")

  _require(config.batch_size > 0, "batch_size", config.batch_size, "must be > 0")
  _require(config.batch_size % num_devices == 0, "batch_size", config.batch_size,
           f"must be divisible by the number of devices ({num_devices})")
  _require(config.batch_size % process_count == 0, "batch_size", config.batch_size,
           f"must be divisible by the number of processes ({process_count})")
  _require(config.num_epochs > 0, "num_epochs", config.num_epochs, "must be > 0")
  _require(config.num_train_steps == -1 or config.num_train_steps > 0, "num_train_steps",
           config.num_train_steps, "must be -1 (use num_epochs) or > 0")
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _require(config[field] >= 1, field, config[field], "must be >= 1")
  _require(config.nonfinite_policy in ("stop", "skip"), "nonfinite_policy", config.nonfinite_policy,
           "must be 'stop' or 'skip'")
  _require(config.max_consecutive_skips >= 0, "max_consecutive_skips", config.max_consecutive_skips,
           "must be >= 0")
