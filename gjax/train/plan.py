"""What a run computes, built from the config and the input's geometry alone:
the method, the optimiser and schedule, the step count, the seeds and the
jitted train step over a mesh.

The trainer builds its run with :func:`plan_run` on the devices it has;
``gjax.scale`` builds the same plan on the devices of a TPU topology this
machine does not have and compiles its step ahead of time. Neither reads data
here: the input contributes only ``steps_per_epoch``, ``image_shape`` and the
two views' augmentations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from gjax import data as gdata
from gjax.train.state import build_method, create_train_state, make_optimizer, total_train_steps
from gjax.train.step import make_train_step


@dataclasses.dataclass(frozen=True)
class RunPlan:
  """One run's pieces; ``train_step`` is the jitted ``(state, batch) -> (state, metrics)``."""

  objective: Any
  hparams: Any
  model: Any
  tx: Any
  schedule: Callable[[int], Any]
  total_steps: int
  steps_per_epoch: int
  image_shape: tuple[int, int, int]
  init_rng: jax.Array
  train_step: Callable
  mesh: jax.sharding.Mesh

  @property
  def with_target(self) -> bool:
    return self.objective.uses_target(self.hparams)

  def initial_state(self):
    """The state the run starts from (its parameters θ_0 from ``init_rng``), replicated on the mesh."""
    return create_train_state(
      self.init_rng,
      self.model,
      self.tx,
      self.image_shape,
      gdata.replicated_sharding(self.mesh),
      with_target=self.with_target,
    )


def plan_run(config, *, steps_per_epoch: int, image_shape, augment, mesh) -> RunPlan:
  """The run ``config`` asks for on ``mesh`` (``augment``: both views' :class:`gjax.data.AugmentConfig`)."""
  total_steps = total_train_steps(config, steps_per_epoch)
  objective, hparams, model = build_method(config)
  tx, schedule = make_optimizer(config, steps_per_epoch, total_steps)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  train_step = make_train_step(model, objective, hparams, tx, augment, step_rng, mesh, total_steps)
  return RunPlan(
    objective,
    hparams,
    model,
    tx,
    schedule,
    total_steps,
    steps_per_epoch,
    tuple(image_shape),
    init_rng,
    train_step,
    mesh,
  )


def plan_for_input(config, train_input, mesh) -> RunPlan:
  """:func:`plan_run` with the geometry of ``train_input`` (a :class:`gjax.train.input_pipeline.TrainInput`)."""
  return plan_run(
    config,
    steps_per_epoch=train_input.steps_per_epoch,
    image_shape=train_input.image_shape,
    augment=train_input.augment,
    mesh=mesh,
  )


def abstract_batch(mesh, global_batch: int, image_shape) -> dict[str, jax.ShapeDtypeStruct]:
  """The shapes of one global training batch (uint8 images, int32 labels) sharded on ``mesh``'s ``data`` axis."""
  sharding = gdata.batch_sharding(mesh)
  return {
    "image": jax.ShapeDtypeStruct((global_batch,) + tuple(image_shape), jax.numpy.uint8, sharding=sharding),
    "label": jax.ShapeDtypeStruct((global_batch,), jax.numpy.int32, sharding=sharding),
  }
