"""The training configuration: defaults, schema and validation.

Every config in ``configs/`` starts from :func:`base_config` and changes fields;
the dict is locked, so a misspelt field (``--config.optim.lr=...``) is
rejected by ``config_flags`` and by :func:`validate_config`. Validation runs
before any data is read or any model is built, and every error names the field.
"""

from __future__ import annotations

import math
import os

import ml_collections

from gjax.data.validation import validate_data_config
from gjax.models.validation import validate_model_config
from gjax.objectives import DEFAULT_METHOD, get_objective, registered_methods, require

LR_SCALINGS = ("linear", "sqrt", "none")
OPTIMIZERS = ("sgd", "adamw")


def method_settings(method: str) -> ml_collections.ConfigDict:
  """``config.<method>``: the method's settings at their defaults (``Objective.defaults``)."""
  _require(method in registered_methods(), "method", method, f"must be one of {registered_methods()}")
  return ml_collections.ConfigDict(dict(get_objective(method).defaults))


def base_config(method: str = DEFAULT_METHOD) -> ml_collections.ConfigDict:
  """Defaults shared by every method and data set (VJE paper Section 5.1-5.2),
  with ``method``'s own section (``config.<method>``, its registered defaults)
  and no other method's. Change the method with :func:`with_method`."""
  c = ml_collections.ConfigDict()
  c.method = method
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
  c.model.bottleneck = 128  # the diagonal-posterior head (VJE): 128 for ResNet-18, 512 for ResNet-50
  c.model.activation = "relu"
  c.model.projector = False  # optional 2-layer projector with LayerNorm (Section 5.2)
  c.model.projector_hidden = 2048
  c.model.projector_dim = 2048
  c.model.projector_layers = 2
  c.model.projector_norm = "layer"  # "batch" for the SimSiam / VICReg / SimCLR projectors
  c.model.projector_norm_last = False  # SimSiam normalises its projector's output too

  c.augment = ml_collections.ConfigDict()
  c.augment.crop_scale_min = 0.2
  c.augment.blur = "auto"  # "auto": the data set's preset (off at <= 32x32); "on" / "off"
  # Per-view probabilities, (view 1, view 2): MoCo v2's by default, the same for both views;
  # BYOL's asymmetric views are blur_prob = (1.0, 0.1) (Grill et al. 2020, Table 6).
  c.augment.flip_prob = (0.5, 0.5)
  c.augment.jitter_prob = (0.8, 0.8)
  c.augment.grayscale_prob = (0.2, 0.2)
  c.augment.blur_prob = (0.5, 0.5)

  c.optim = ml_collections.ConfigDict()
  # "sgd": SGD with momentum, weight decay added to every gradient (the ResNet recipes);
  # "adamw": AdamW, decoupled weight decay on the weight matrices and kernels only (the ViT recipes)
  c.optim.optimizer = "sgd"
  c.optim.base_learning_rate = 0.05
  c.optim.lr_scaling = "linear"  # lr = base * (batch / reference_batch_size)
  c.optim.reference_batch_size = 256
  c.optim.momentum = 0.9  # SGD's momentum
  c.optim.adam_b1 = 0.9  # AdamW's moment decays
  c.optim.adam_b2 = 0.999
  c.optim.weight_decay = 5e-6
  c.optim.warmup_epochs = 0.0
  c.optim.grad_clip_norm = 0.0  # > 0: clip the global gradient norm to this before the update

  c.batch_size = 256  # global, over all devices and processes
  c.num_epochs = 800.0
  c.num_train_steps = -1  # > 0 overrides num_epochs

  c.eval = ml_collections.ConfigDict()
  # {name: settings} of what eval.py runs. The evaluators are the eval layer's (gjax.eval.registry):
  # the configs fill this with gjax.eval.evaluator_settings(...), gjax.eval.validate_evaluators checks it.
  c.eval.evaluators = ml_collections.ConfigDict()
  c.eval.run_only = ()  # names among eval.evaluators that eval.py runs; () = all of them
  c.eval.online_evaluators = ()  # names among eval.evaluators that run every eval.every_epochs
  c.eval.results_path = ""  # where eval.py writes its results; "" = <workdir>/eval_results.json
  c.eval.batch_size = 512
  c.eval.num_train_examples = -1  # labelled training images of the evaluators (k-NN bank); -1 = the whole split
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
  if method in registered_methods():  # an unknown one is named by validate_config, as config.method
    c.model.update(get_objective(method).model_defaults)  # what the method needs of the network (a ViT)
  c[method] = method_settings(method)
  c.lock()
  return c


def with_method(config, method: str) -> ml_collections.ConfigDict:
  """A copy of ``config`` training ``method``: its section at the defaults
  replaces the previous method's; every other field is kept."""
  fields = {k: v for k, v in config.to_dict().items() if k not in (config.method, "method")}
  c = base_config(method)
  c.unlock()
  for key, value in fields.items():
    c[key] = value
  c.lock()
  return c


def drop_other_method_sections(saved: dict) -> dict:
  """A ``config.json`` read back, without the sections of methods other than
  its own (gjax wrote every method's section until each method owned its
  settings); unknown sections are left for the schema check to name."""
  methods = set(registered_methods())
  return {k: v for k, v in saved.items() if k == saved.get("method") or k not in methods}


def learning_rate(config) -> float:
  """Peak learning rate from the base rate and the global batch size.

  ``linear`` (default, the rule of Goyal et al. and the VJE/SimSiam recipes):
  ``base * batch / reference``; ``sqrt``: ``base * sqrt(batch / reference)``;
  ``none``: ``base``.
  """
  ratio = config.batch_size / config.optim.reference_batch_size
  return (
    config.optim.base_learning_rate * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[config.optim.lr_scaling]
  )


_require = require

#: The augmentation fields given per view, ``(view 1, view 2)``.
VIEW_PROBABILITIES = ("flip_prob", "jitter_prob", "grayscale_prob", "blur_prob")


def config_fields(tree, prefix: str = ""):
  """``(dotted name, value)`` of every leaf field of a config (or nested dict)."""
  for key, value in tree.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from config_fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


#: Fields that may differ between the segments of one run: they change how a run
#: is logged, checkpointed, evaluated or where its data is read, not what it computes.
RESUME_FREE_FIELDS = (
  "log_every_steps",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "nonfinite_policy",
  "max_consecutive_skips",
  "resume_with_changed_config",
  "dataset.data_dir",
)
RESUME_FREE_PREFIXES = ("eval.",)


def changed_fields(saved: dict, current: dict) -> dict[str, tuple]:
  """``{field: (saved value, current value)}`` of the fields that change what a
  run computes; fields that only one of the configs has (a config written by
  an older gjax) are not compared."""
  a, b = dict(config_fields(saved)), dict(config_fields(current))
  return {
    k: (a[k], b[k])
    for k in sorted(set(a) & set(b))
    if a[k] != b[k] and k not in RESUME_FREE_FIELDS and not k.startswith(RESUME_FREE_PREFIXES)
  }


def _check_schema(config) -> None:
  """Every field of ``config`` exists in :func:`base_config` with the same type.

  The reference is the base config of ``config.method`` (its own section and
  no other method's). ints are accepted where floats are expected; floats must
  be finite (except the method's ``Objective.may_be_infinite``); tuples may
  also be lists. A config built by hand (an unlocked dict, a ``config.json``
  read back) is held to the same schema as one changed through ``config_flags``.
  """
  method = config.method
  _require(method in registered_methods(), "method", method, f"must be one of {registered_methods()}")
  others = sorted(k for k in config.keys() if k in registered_methods() and k != method)
  _require(
    not others,
    "method",
    method,
    f"the config has the section of method {others[0]!r}, not of {method!r}: a config holds its own "
    f"method's section only; start from a config of {method!r} (e.g. configs/fashion_mnist.py:method={method}) "
    f"or build it with gjax.train.config.with_method"
    if others
    else "",
  )
  infinite = {f"{method}.{name}" for name in get_objective(method).may_be_infinite}
  # eval.evaluators holds the evaluators' own settings: gjax.eval.validate_evaluators checks them.
  given = {k: v for k, v in config_fields(config) if not k.startswith(EVALUATOR_SETTINGS)}
  reference = {k: v for k, v in config_fields(base_config(method)) if not k.startswith(EVALUATOR_SETTINGS)}
  check_fields_against(given, reference, infinite=infinite)


#: The subtree of the evaluators' settings (``{name: settings}``), the eval layer's to check.
EVALUATOR_SETTINGS = "eval.evaluators."


def check_fields_against(given, reference, prefix: str = "", infinite=()) -> None:
  """``given`` has exactly the fields of ``reference`` (flat ``{dotted name:
  value}`` dicts, or sections), each of the reference value's type: ints are
  accepted where floats are expected; floats must be finite (except the names
  in ``infinite``); tuples may also be lists. Errors name ``prefix + field``."""
  given = {prefix + k: v for k, v in config_fields(given)}
  reference = {prefix + k: v for k, v in config_fields(reference)}
  unknown = sorted(set(given) - set(reference))
  _require(
    not unknown,
    unknown[0] if unknown else "",
    given.get(unknown[0]) if unknown else None,
    f"unknown field(s) {unknown}",
  )
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
      if ok and not math.isfinite(value) and not (name in infinite and value == math.inf):
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

  Unknown and missing fields are errors too (:func:`_check_schema`). Each part
  owns its own checks: the method's settings its objective
  (``Objective.validate``), ``config.dataset`` :func:`gjax.data.validate_data_config`,
  ``config.model`` :func:`gjax.models.validate_model_config`; the augmentation,
  optimiser, evaluation and run fields are checked here.
  """
  _check_schema(config)
  get_objective(config.method).validate(config[config.method], config)
  _require(config.seed >= 0, "seed", config.seed, "must be >= 0")
  validate_data_config(config.dataset)  # the data and model packages own their checks
  validate_model_config(config.model)

  a = config.augment
  _require(0 < a.crop_scale_min <= 1, "augment.crop_scale_min", a.crop_scale_min, "must be in (0, 1]")
  _require(a.blur in ("auto", "on", "off"), "augment.blur", a.blur, "must be 'auto', 'on' or 'off'")
  for field in VIEW_PROBABILITIES:
    _require(
      len(a[field]) == 2
      and all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1 for p in a[field]),
      f"augment.{field}",
      tuple(a[field]),
      "must be two probabilities in [0, 1]: (view 1, view 2)",
    )

  o = config.optim
  _require(o.optimizer in OPTIMIZERS, "optim.optimizer", o.optimizer, f"must be one of {OPTIMIZERS}")
  _require(0 <= o.adam_b1 < 1, "optim.adam_b1", o.adam_b1, "must be in [0, 1)")
  _require(0 <= o.adam_b2 < 1, "optim.adam_b2", o.adam_b2, "must be in [0, 1)")
  _require(o.base_learning_rate > 0, "optim.base_learning_rate", o.base_learning_rate, "must be > 0")
  _require(o.lr_scaling in LR_SCALINGS, "optim.lr_scaling", o.lr_scaling, f"must be one of {LR_SCALINGS}")
  _require(o.reference_batch_size > 0, "optim.reference_batch_size", o.reference_batch_size, "must be > 0")
  _require(0 <= o.momentum < 1, "optim.momentum", o.momentum, "must be in [0, 1)")
  _require(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
  _require(o.warmup_epochs >= 0, "optim.warmup_epochs", o.warmup_epochs, "must be >= 0")
  _require(o.grad_clip_norm >= 0, "optim.grad_clip_norm", o.grad_clip_norm, "must be >= 0 (0 = no clipping)")

  e = config.eval
  _require(e.batch_size >= 1, "eval.batch_size", e.batch_size, "must be >= 1")
  for field in ("run_only", "online_evaluators"):
    outside = [n for n in e[field] if n not in e.evaluators.keys()]
    _require(
      not outside,
      f"eval.{field}",
      tuple(e[field]),
      f"{outside} are not among config.eval.evaluators ({sorted(e.evaluators.keys())}), whose settings they run with",
    )
  _require(e.every_epochs >= 0, "eval.every_epochs", e.every_epochs, "must be >= 0 (0 = off)")
  _require(
    e.every_epochs == 0 or e.online_evaluators,
    "eval.every_epochs",
    e.every_epochs,
    "asks for evaluation during training, but config.eval.online_evaluators is empty",
  )
  if e.results_path:
    _require(
      e.results_path.endswith(".json") and os.path.isdir(os.path.dirname(os.path.abspath(e.results_path))),
      "eval.results_path",
      e.results_path,
      "must be a .json file in an existing directory ('' = the workdir's)",
    )
  _require(
    e.num_train_examples == -1 or e.num_train_examples > 0,
    "eval.num_train_examples",
    e.num_train_examples,
    "must be -1 (all) or > 0",
  )

  _require(config.batch_size > 0, "batch_size", config.batch_size, "must be > 0")
  _require(
    config.batch_size % num_devices == 0,
    "batch_size",
    config.batch_size,
    f"must be divisible by the number of devices ({num_devices})",
  )
  _require(
    config.batch_size % process_count == 0,
    "batch_size",
    config.batch_size,
    f"must be divisible by the number of processes ({process_count})",
  )
  _require(config.num_epochs > 0, "num_epochs", config.num_epochs, "must be > 0")
  _require(
    config.num_train_steps == -1 or config.num_train_steps > 0,
    "num_train_steps",
    config.num_train_steps,
    "must be -1 (use num_epochs) or > 0",
  )
  for field in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    _require(config[field] >= 1, field, config[field], "must be >= 1")
  _require(
    config.nonfinite_policy in ("stop", "skip"), "nonfinite_policy", config.nonfinite_policy, "must be 'stop' or 'skip'"
  )
  _require(config.max_consecutive_skips >= 0, "max_consecutive_skips", config.max_consecutive_skips, "must be >= 0")
