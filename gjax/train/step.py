"""The jitted train step: two augmented views, the objective's loss and
gradient, the update, the momentum target's EMA, and the non-finite guard
inside the step (a bad step never changes the state)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from gjax import data as gdata
from gjax.objectives import target_momentum_at
from gjax.train.state import TrainState


def ema_update(target_params, params, tau):
  """``ξ <- τ ξ + (1 - τ) θ``: the momentum target network's update (MoCo, BYOL)."""
  return jax.tree_util.tree_map(lambda xi, theta: tau * xi + (1.0 - tau) * theta, target_params, params)


#: Folded into the step's key for the network's own randomness (drop-path, I-JEPA's masks), so
#: that the augmentation and loss keys, and every run without such randomness, stay as they were.
MODEL_RNG_SALT = 0x6D6F646C


def model_rngs(rng):
  """The network's RNG streams at a step: ``"dropout"`` (drop-path) and ``"masks"`` (I-JEPA)."""
  dropout, masks = jax.random.split(jax.random.fold_in(rng, MODEL_RNG_SALT))
  return {"dropout": dropout, "masks": masks}


def make_train_step(
  model, objective, hparams, tx, augment: gdata.AugmentConfig, base_rng, mesh, total_steps: int | None = None
):
  """The jitted step ``(state, batch) -> (state, metrics)`` over ``mesh``.

  For a method with a momentum target network (``objective.uses_target``) the
  target's ``target_z_i`` of both views (encoder and projector under the target
  parameters, BatchNorm on the batch's statistics, constants) join the
  outputs, and after the update the target follows the new parameters by EMA
  at ``target_momentum_at(hparams, step, total_steps)``.
  """
  replicated = gdata.replicated_sharding(mesh)
  batch_sharded = gdata.batch_sharding(mesh)
  uses_target = objective.uses_target(hparams)
  if uses_target and total_steps is None:
    raise ValueError(
      f"method {objective.name!r} trains a momentum target: make_train_step needs total_steps "
      "(its momentum schedule runs over the whole run)"
    )

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    aug_rng, loss_rng = jax.random.split(rng)
    rngs = model_rngs(rng)
    view_1, view_2 = gdata.two_views(aug_rng, batch["image"], augment)
    targets = None
    if uses_target:
      targets, _ = model.apply(
        {"params": state.target_params, **state.model_state},
        view_1,
        view_2,
        train=True,
        method=model.target_embeddings,
        mutable=list(state.model_state),
        rngs=rngs,
      )
      targets = jax.lax.stop_gradient(targets)

    def loss_fn(params):
      outputs, model_state = model.apply(
        {"params": params, **state.model_state},
        view_1,
        view_2,
        train=True,
        targets=targets,
        mutable=list(state.model_state),
        rngs=rngs,
      )
      loss, metrics = objective.loss_fn(outputs, loss_rng, hparams)
      return loss, (metrics, model_state)

    (loss, (metrics, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    target_params = state.target_params
    if uses_target:
      tau = target_momentum_at(hparams, state.step, total_steps)
      target_params = ema_update(state.target_params, params, tau)
      metrics = dict(metrics, target_momentum=tau)
    grad_norm, param_norm = optax.tree.norm(grads), optax.tree.norm(params)
    # A non-finite loss, gradient or update leaves the state as it was (the
    # host then stops or skips, config.nonfinite_policy); the step counter moves
    # on so that the data order and the schedule stay those of the run.
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)
    metrics = dict(
      metrics, loss=loss, grad_norm=grad_norm, param_norm=param_norm, nonfinite=1.0 - finite.astype(jnp.float32)
    )
    new_state = TrainState(
      step=state.step + 1,
      params=keep(params, state.params),
      model_state=keep(model_state, state.model_state),
      opt_state=keep(opt_state, state.opt_state),
      target_params=keep(target_params, state.target_params),
    )
    return new_state, metrics

  return jax.jit(
    train_step,
    in_shardings=(replicated, {"image": batch_sharded, "label": batch_sharded}),
    out_shardings=(replicated, replicated),
    donate_argnums=(0,),
  )
