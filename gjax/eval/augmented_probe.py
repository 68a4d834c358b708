"""The ``linear_probe_augmented`` evaluator: the ImageNet linear-evaluation
recipe of SimCLR (Chen et al. 2020, Appendix B.5) and BYOL (Grill et al.
2020, Appendix C.1): a linear classifier on the frozen encoder's output ``h``,
trained on *augmented* images (random resized crop and horizontal flip, no
colour distortion) that pass through the frozen encoder at every step, then
scored on the central evaluation view.

Streamed like training: each epoch every process reads its own block of the
labelled training split in batches (:class:`gjax.eval.splits.EvalSplit`), one
jitted step augments on the device, embeds with the frozen network
(BatchNorm in evaluation mode), and updates the classifier (SGD with
momentum 0.9, cosine decay, replicated parameters, the batch sharded on the
``data`` axis). No process holds the split's images or features; the test
features are the sharded ones of :meth:`gjax.eval.registry.EvalContext.sharded`.
The per-epoch order within a process's block is shuffled by ``(seed, epoch)``
for an in-memory split; a streamed TFDS block is read in its stored order.

The recipes' own settings: SimCLR 90 epochs at batch 4096, learning rate
0.1 x batch / 256 with Nesterov momentum, no weight decay; BYOL 80 epochs,
the learning rate from a sweep. gjax's defaults are 90 epochs at batch 256,
learning rate 0.1 (cosine decay, momentum 0.9), no weight decay.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gjax import data as gdata
from gjax.eval.linear_probe import LinearProbe, make_probe_optimizer
from gjax.eval.registry import Evaluator, register_evaluator
from gjax.eval.sharded import SplitLayout, sharded_probe_topk
from gjax.objectives import require

#: SimCLR / BYOL's linear-evaluation augmentation: crop (scale 0.08-1) and flip only.
PROBE_CROP_SCALE = (0.08, 1.0)


def probe_augment(augment: gdata.AugmentConfig) -> gdata.AugmentConfig:
  """The data set's view with the linear-evaluation augmentation: random
  resized crop and flip, no colour jitter, grayscale or blur."""
  return dataclasses.replace(
    augment, crop_scale=PROBE_CROP_SCALE, jitter_prob=0.0, grayscale_prob=0.0, blur=False, blur_prob=0.0
  )


def make_augmented_probe_step(model, augment: gdata.AugmentConfig, optimizer, mesh, feature: str = "h"):
  """The jitted ``(params, opt_state, variables, images, labels, valid, key) ->
  (params, opt_state, loss)``: augment, embed frozen, one SGD step on the
  linear classifier (the mean cross-entropy over the batch's valid rows)."""
  replicated, sharded = gdata.replicated_sharding(mesh), gdata.batch_sharding(mesh)

  @functools.partial(
    jax.jit,
    in_shardings=(replicated, replicated, replicated, sharded, sharded, sharded, replicated),
    out_shardings=(replicated, replicated, replicated),
    donate_argnums=(0, 1),
  )
  def step(params, opt_state, variables, images, labels, valid, key):
    x = gdata.augment_batch(key, images, augment)
    feats = jax.lax.stop_gradient(model.apply(variables, x, train=False, method=type(model).embed)[feature])
    weight = valid.astype(jnp.float32)

    def loss_fn(params):
      logits = feats @ params["weights"] + params["bias"]
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      return jnp.sum(losses * weight) / jnp.maximum(jnp.sum(weight), 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  return step


def shuffled_reader(split, seed: int, epoch: int):
  """``split``'s reader, with an in-memory split's examples in the order of
  ``np.random.default_rng((seed, epoch))`` (a streamed split as stored)."""
  if split.images is None:
    return split.read
  from gjax.eval.sharded import local_eval_batches

  order = np.random.default_rng((seed, epoch)).permutation(split.num_examples)
  images, labels = split.images[order], split.labels[order]
  return lambda layout, process_index: local_eval_batches(images, labels, layout, process_index)


def run_augmented_probe(context, settings) -> dict[str, float]:
  """Top-1 / top-5 of the augmented-image linear probe on the encoder output ``h``."""
  from gjax.train.input_pipeline import augment_config

  config, mesh = context.config, context.mesh
  split = context.split("train")
  devices = mesh.devices.size
  batch = max(devices, settings.batch_size - settings.batch_size % devices)
  layout = SplitLayout(split.num_examples, batch, jax.process_count())
  dim = context.sharded("test").values["h"].shape[-1]
  num_classes = context.num_classes
  steps = settings.epochs * layout.num_chunks
  optimizer = make_probe_optimizer(settings.learning_rate, 0.9, settings.weight_decay, steps)
  key = jax.random.key(config.seed)
  params = {"weights": jnp.zeros((dim, num_classes), jnp.float32), "bias": jnp.zeros((num_classes,), jnp.float32)}
  params = jax.device_put(params, gdata.replicated_sharding(mesh))
  opt_state = jax.device_put(optimizer.init(params), gdata.replicated_sharding(mesh))
  augment = probe_augment(augment_config(config, split.image_shape))
  step = make_augmented_probe_step(context.model, augment, optimizer, mesh)
  losses = []
  for epoch in range(settings.epochs):
    losses = []
    for i, local in enumerate(shuffled_reader(split, config.seed, epoch)(layout, jax.process_index())):
      global_batch = gdata.make_global_batch(local, mesh)
      params, opt_state, loss = step(
        params,
        opt_state,
        context.variables,
        global_batch["image"],
        global_batch["label"],
        global_batch["valid"],
        jax.random.fold_in(jax.random.fold_in(key, epoch), i),
      )
      losses.append(loss)
  probe = LinearProbe(
    weights=gdata.to_host(params["weights"]),
    bias=gdata.to_host(params["bias"]),
    mean=np.zeros(dim, np.float32),
    std=np.ones(dim, np.float32),
    final_loss=float(np.mean([gdata.to_host(l) for l in losses])),
  )
  top = sharded_probe_topk(probe, context.sharded("test"), "h", ks=(1, 5))
  return {"linear_aug_top1_h": top[1], "linear_aug_top5_h": top[5], "linear_aug_final_loss": probe.final_loss}


def check_augmented_probe_settings(s, config) -> None:
  require(s.epochs >= 1, "eval.evaluators.linear_probe_augmented.epochs", s.epochs, "must be >= 1")
  require(s.learning_rate > 0, "eval.evaluators.linear_probe_augmented.learning_rate", s.learning_rate, "must be > 0")
  require(s.batch_size >= 1, "eval.evaluators.linear_probe_augmented.batch_size", s.batch_size, "must be >= 1")
  require(s.weight_decay >= 0, "eval.evaluators.linear_probe_augmented.weight_decay", s.weight_decay, "must be >= 0")


#: Defaults: 90 epochs at batch 256, lr 0.1, no weight decay (the recipes' own settings: module docstring).
LINEAR_PROBE_AUGMENTED = register_evaluator(
  Evaluator(
    "linear_probe_augmented",
    run_augmented_probe,
    defaults={"epochs": 90, "learning_rate": 0.1, "batch_size": 256, "weight_decay": 0.0},
    check=check_augmented_probe_settings,
    description="linear probe on augmented images through the frozen encoder (ImageNet linear evaluation)",
  )
)
