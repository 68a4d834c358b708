"""The train state (:class:`TrainState`) and what builds it: the method
(objective, settings, network), the optimiser and its schedule, the initial
state, and :func:`restore_run`, the one call by which an evaluator restores a run."""

from __future__ import annotations

import math
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gjax import data as gdata
from gjax.config_checks import require
from gjax.models import build_two_view_model
from gjax.objectives import get_objective
from gjax.train import config as config_lib
from gjax.train.checkpoints import checkpoint_manager, restore_latest


@flax.struct.dataclass
class TrainState:
  """What a train step updates and a checkpoint holds: the step count, the
  parameters, the mutable variables and the optimiser state. ``model_state``
  holds every mutable variable collection of the network
  (``batch_stats`` of BatchNorm, and the running state of density heads such as
  GMJE-EM's sufficient statistics, the GNG graph or the SMC memory bank).
  ``target_params``: the momentum (EMA) target network's parameters, for the
  methods that train against one (``{}`` otherwise); checkpointed and sharded
  like ``params``."""

  step: jax.Array
  params: Any
  model_state: Any
  opt_state: Any
  target_params: Any = flax.struct.field(default_factory=dict)

  @property
  def variables(self) -> dict[str, Any]:
    """``{"params": ..., <collection>: ...}`` for ``model.apply``."""
    return {"params": self.params, **self.model_state}


def build_method(config):
  """``config.method``'s objective, its hyperparameters (``config.<method>``) and
  the two-view network with the objective's head."""
  objective = get_objective(config.method)
  hparams = config[config.method]
  return objective, hparams, build_two_view_model(config.model, objective.head, objective.head_kwargs(hparams))


def total_train_steps(config, steps_per_epoch: int) -> int:
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  return max(1, int(math.ceil(config.num_epochs * steps_per_epoch)))


def decays_weight(params):
  """AdamW's weight-decay mask: the weight matrices and convolution kernels (arrays of rank >= 2)
  decay; biases and norm scales and offsets (rank 1) do not, as I-JEPA, MAE and DeiT exclude them."""
  return jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)


def make_optimizer(config, steps_per_epoch: int, total_steps: int):
  """The optimiser (``optim.optimizer``) on a linear warm-up then cosine decay schedule.

  ``sgd``: SGD with momentum; weight decay is added to the gradient of every
  parameter before momentum, as ``torch.optim.SGD(weight_decay=...)`` does in
  the reference recipes. ``adamw``: AdamW (``optim.adam_b1``, ``adam_b2``)
  with decoupled weight decay on the weight matrices and kernels only
  (:func:`decays_weight`), as ``torch.optim.AdamW`` with the ViT recipes'
  parameter groups. With ``optim.grad_clip_norm > 0`` the gradient's global
  norm is clipped to it first (the GJE family's density losses need it at SGD
  learning rates).
  """
  o = config.optim
  require(
    o.optimizer in config_lib.OPTIMIZERS, "optim.optimizer", o.optimizer, f"must be one of {config_lib.OPTIMIZERS}"
  )
  peak = config_lib.learning_rate(config)
  warmup = min(int(round(o.warmup_epochs * steps_per_epoch)), total_steps - 1)
  if warmup > 0:
    schedule = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, total_steps, end_value=0.0)
  else:
    schedule = optax.cosine_decay_schedule(peak, total_steps)
  clip = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
  if o.optimizer == "adamw":
    update = [optax.adamw(schedule, b1=o.adam_b1, b2=o.adam_b2, weight_decay=o.weight_decay, mask=decays_weight)]
  else:
    update = [optax.add_decayed_weights(o.weight_decay), optax.sgd(schedule, momentum=o.momentum)]
  return optax.chain(*clip, *update), schedule


#: XLA's LLVM optimisation level for the one-off initialisation program. Its
#: run time is negligible while its compilation at the default level took 25 s
#: of a 30 s start-up (ResNet-18, 2 CPU cores); at level 0 it takes 4 s. The
#: parameters agree with the default level's to 1.5e-7 relative (the normal
#: samplers' last bit), and are deterministic at either level.
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def init_state_fn(model, tx, image_shape, *, with_target: bool = False):
  """The pure ``rng -> TrainState`` that initialises a run (``with_target``: the
  momentum target network starts as a copy of the online parameters); jitted
  by :func:`create_train_state`, traced abstractly by :func:`abstract_train_state`."""

  def init(rng):
    dummy = jnp.zeros((2,) + tuple(image_shape), jnp.float32)
    variables = model.init(rng, dummy, dummy, train=False)
    params = variables["params"]
    model_state = {name: value for name, value in variables.items() if name != "params"}
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      model_state=model_state,
      opt_state=tx.init(params),
      target_params=jax.tree_util.tree_map(jnp.copy, params) if with_target else {},
    )

  return init


def create_train_state(rng, model, tx, image_shape, replicated, *, with_target: bool = False) -> TrainState:
  """Initialises parameters inside one jitted program, replicated on the mesh
  (compiled with :data:`INIT_COMPILER_OPTIONS`)."""
  init = init_state_fn(model, tx, image_shape, with_target=with_target)
  return jax.jit(init, out_shardings=replicated).lower(rng).compile(INIT_COMPILER_OPTIONS)(rng)


def abstract_train_state(model, tx, image_shape, replicated, *, with_target: bool = False) -> TrainState:
  """The train state's shapes and dtypes as ``jax.ShapeDtypeStruct`` leaves with
  the ``replicated`` sharding, without computing or placing anything: what
  :func:`create_train_state` would return, for ahead-of-time compilation on
  devices this process does not have (``gjax.scale``)."""
  shapes = jax.eval_shape(init_state_fn(model, tx, image_shape, with_target=with_target), jax.random.PRNGKey(0))
  return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)


def no_checkpoint_error(workdir: str, manager=None) -> FileNotFoundError | None:
  """The error for a ``workdir`` without a checkpoint directory, or (with its
  ``manager``) without a finished step in it; else ``None``."""
  directory = os.path.join(workdir, "checkpoints")
  if os.path.isdir(directory) and (manager is None or manager.latest_step() is not None):
    return None
  return FileNotFoundError(
    f"no checkpoint in {directory}; train first (python train.py --config ... --workdir {workdir})"
  )


def restore_run(config, workdir: str, image_shape, mesh=None):
  """``(model, state)`` of the latest checkpoint of the run in ``workdir``,
  replicated on ``mesh`` (default: all devices), for evaluation: the workdir
  is left as it is (an unreadable checkpoint is reported, not moved aside).
  Raises ``FileNotFoundError`` when the run has no checkpoint."""
  error = no_checkpoint_error(workdir)
  if error:
    raise error
  mesh = gdata.data_mesh() if mesh is None else mesh
  objective, hparams, model = build_method(config)
  tx, _ = make_optimizer(config, 1, 2)  # the optimiser's state structure; its schedule is not used
  state = create_train_state(
    jax.random.PRNGKey(0),
    model,
    tx,
    image_shape,
    gdata.replicated_sharding(mesh),
    with_target=objective.uses_target(hparams),
  )
  manager = checkpoint_manager(workdir, config)
  try:
    error = no_checkpoint_error(workdir, manager)  # a checkpoints/ directory with no finished step in it
    if error:
      raise error
    state = restore_latest(manager, state, move_aside=False, config=config)
  finally:
    manager.close()
  return model, state
