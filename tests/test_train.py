"""The shared trainer: sharding equivalence, resume, files, config errors."""

import json
import logging
import os
import shlex
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjax import data as gdata
from gjax.eval import use_default_evaluators
from gjax.train import base_config, create_train_state, make_optimizer, make_train_step, progress, train_and_evaluate
from gjax.train import config as config_lib
from gjax.train.input_pipeline import build_train_input
from gjax.train.metrics import read_metrics
from gjax.train.state import build_method
from tests.helpers import set_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  """A tiny synthetic-data config; ``method`` (if given) picks the method first, with its own section."""
  overrides = dict(overrides)
  c = base_config(overrides.pop("method", "vje"))
  use_default_evaluators(c)
  c.dataset.name = "synthetic"
  c.dataset.synthetic_image_size = 16
  c.dataset.synthetic_channels = 3
  c.model.encoder = "resnet10"  # one block per stage: the same code paths, less to compile
  c.model.stem = "cifar"
  c.model.width_multiplier = 0.0625
  c.model.bottleneck = 16
  c.batch_size = 16
  c.num_train_steps = 4
  c.log_every_steps = 2
  c.checkpoint_every_steps = 2
  c.optim.base_learning_rate = 0.5
  return set_fields(c, overrides)


def _one_step(config, devices):
  mesh = gdata.data_mesh(devices)
  train_input = build_train_input(config)
  objective, hparams, model = build_method(config)
  tx, _ = make_optimizer(config, train_input.steps_per_epoch, 10)
  state = create_train_state(jax.random.PRNGKey(0), model, tx, train_input.image_shape, gdata.replicated_sharding(mesh))
  step = make_train_step(model, objective, hparams, tx, train_input.augment, jax.random.PRNGKey(1), mesh)
  batch = gdata.make_global_batch(next(train_input.batches(0)), mesh)
  state, metrics = step(state, batch)
  return jax.device_get(state.params), jax.device_get(state.model_state), jax.device_get(metrics)


def test_one_step_on_8_devices_matches_1_device():
  assert jax.device_count() == 8
  config = tiny_config()
  params_8, stats_8, metrics_8 = _one_step(config, jax.devices())
  params_1, stats_1, metrics_1 = _one_step(config, jax.devices()[:1])
  chex.assert_trees_all_close(params_8, params_1, rtol=1e-5, atol=1e-5)
  chex.assert_trees_all_close(stats_8, stats_1, rtol=1e-5, atol=1e-5)
  chex.assert_tree_all_finite((params_8, stats_8))
  np.testing.assert_allclose(metrics_8["loss"], metrics_1["loss"], rtol=1e-5)
  # The step did change the parameters.
  assert metrics_8["grad_norm"] > 0


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, caplog):
  config = tiny_config()
  with caplog.at_level(logging.INFO, logger="gjax.train"):
    full = train_and_evaluate(config, str(tmp_path / "full"))
  assert full["final_step"] == 4
  # What the run printed: one line per log window with the loss and VJE's key metrics, then what it wrote where.
  messages = [r.getMessage() for r in caplog.records if r.name == "gjax.train"]
  progress_lines = [m for m in messages if m.startswith("step ")]
  full_rows = read_metrics(str(tmp_path / "full" / "train.jsonl"))
  assert len(progress_lines) == len(full_rows) == 2
  for line, row in zip(progress_lines, full_rows):
    shown = f"loss {row['loss']:.4g} nll {row['nll']:.4g} kl {row['kl']:.4g} z_std_min {row['z_std_min']:.4g} |"
    assert line.startswith(f"step {row['step']}/4 ({row['step'] / 4:.1%}) {shown}"), line
    assert " img/s | ETA " in line and len(line) <= progress.PROGRESS_WIDTH and "grad_norm" not in line
  assert messages[-1].startswith("finished step 4/4 in 0:00:")
  assert messages[-1].endswith(
    f"| in {tmp_path / 'full'}: checkpoints/ (step 4), train.jsonl, tensorboard/, "
    "summary.json; eval.py writes eval_results.json"
  )
  caplog.clear()
  with caplog.at_level(logging.INFO, logger="gjax.train"):
    first = train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_steps=2)
  assert first["final_step"] == 2
  assert caplog.records[-1].getMessage().startswith("stopped at step 2/4 in ")
  second = train_and_evaluate(config, str(tmp_path / "resumed"))
  assert second["start_step"] == 2 and second["final_step"] == 4
  state_a, state_b = jax.device_get(full["state"]), jax.device_get(second["state"])
  assert int(state_a.step) == int(state_b.step) == 4
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_a.params, state_b.params)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_a.opt_state, state_b.opt_state)
  jax.tree_util.tree_map(np.testing.assert_array_equal, state_a.model_state, state_b.model_state)
  # Metric files: both runs' rows, finite losses, the logged fields present.
  rows = read_metrics(str(tmp_path / "resumed" / "train.jsonl"))
  assert [r["step"] for r in rows] == [2, 4]
  for key in (
    "loss",
    "directional",
    "radial",
    "kl",
    "var_mean",
    "var_cv",
    "z_std_min",
    "learning_rate",
    "images_per_second",
  ):
    assert key in rows[-1], key
  assert all(np.isfinite(r["loss"]) for r in rows)
  assert os.listdir(tmp_path / "full" / "tensorboard" / "train")
  saved = json.loads((tmp_path / "full" / "config.json").read_text())
  assert saved["method"] == "vje" and saved["dataset"]["name"] == "synthetic"


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("dataset.name", "mnist", "config.dataset.name='mnist'"),
    ("method", "dino", "config.method='dino'"),
    ("batch_size", 12, "divisible by the number of devices"),
    ("vje.nu", 0.0, "config.vje.nu=0.0"),
    ("vje.beta", -0.5, "config.vje.beta=-0.5"),
    ("model.encoder", "resnet101", "config.model.encoder"),
    ("optim.momentum", 1.0, "config.optim.momentum"),
    ("augment.blur", "maybe", "config.augment.blur"),
  ],
)
def test_bad_config_fails_before_training_naming_the_field(tmp_path, field, value, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
    train_and_evaluate(tiny_config(**{field: value}), str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints")


def test_unknown_config_field_is_rejected():
  with pytest.raises((AttributeError, KeyError), match="nuu"):
    tiny_config(**{"vje.nuu": 3.0})


def test_missing_fashion_mnist_fails_with_install_hint(tmp_path, monkeypatch):
  monkeypatch.setenv("GJAX_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
  config = tiny_config(**{"dataset.name": "fashion_mnist"})
  with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
    train_and_evaluate(config, str(tmp_path / "run"))


def test_train_py_command_line_with_overrides(tmp_path):
  cmd = [
    sys.executable,
    "train.py",
    "--config",
    "configs/vje_fashion_mnist.py:smoke",
    "--workdir",
    str(tmp_path),
    "--config.dataset.name=synthetic",
    "--config.dataset.synthetic_image_size=16",
    "--config.model.width_multiplier=0.0625",
    "--config.batch_size=16",
    "--config.num_train_steps=2",
    "--config.log_every_steps=1",
    "--config.vje.nu=1.5",
    "--config.dataset.num_train_examples=-1",
  ]
  out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "step 2/2" in out.stderr
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["vje"]["nu"] == 1.5
  # The end: what was written where, then the eval.py command, which evaluates this run as printed.
  lines = out.stderr.strip().splitlines()
  assert "gjax.train] finished step 2/2 in 0:" in lines[-2] and f"| in {tmp_path}: checkpoints/ (step 2)" in lines[-2]
  command = lines[-1].split("gjax.train] evaluate it: ", 1)[1]
  assert command == shlex.join(["python", "eval.py", *cmd[2:]])
  evaluated = subprocess.run(
    [sys.executable, *shlex.split(command)[1:], "--config.eval.run_only=('knn',)"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert evaluated.returncode == 0, evaluated.stderr[-3000:]
  results = json.loads((tmp_path / "eval_results.json").read_text())
  table = evaluated.stderr[evaluated.stderr.index("results at step 2 (") :].splitlines()
  assert table[1].split() == ["metric", "value"]
  accuracies = [name for name in results if name.startswith("knn")]
  assert accuracies, results
  for name in accuracies:  # in percent, beside the JSON's fractions
    assert next(row for row in table if row.split()[0] == name).split()[1:] == [f"{100 * results[name]:.1f}", "%"]
  bad = subprocess.run(cmd[:5] + ["--config.vje.nuu=2"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert bad.returncode != 0 and "nuu" in bad.stderr


def test_tfds_config_trains_on_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from configs.cifar10 import get_config

  config = get_config("method=vje,variant=smoke")
  config.model.width_multiplier = 0.0625
  config.batch_size = 16
  config.num_train_steps = 2
  config.dataset.num_train_examples = 64
  with tfds.testing.mock_data(num_examples=64, policy=tfds.testing.MockPolicy.USE_CODE):
    summary = train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == 2 and np.isfinite(summary["metrics"]["loss"])


def test_unprepared_tfds_dataset_fails_clearly(tmp_path):
  from configs.cifar10 import get_config

  config = get_config("method=vje,variant=smoke")
  config.dataset.data_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match="not prepared.*never downloads"):
    train_and_evaluate(config, str(tmp_path / "run"))


def test_train_classes_filters_the_training_split():
  from gjax.train.input_pipeline import load_in_memory

  config = tiny_config(**{"dataset.train_classes": (2, 5)})
  _, labels = load_in_memory(config, "train")
  assert set(labels.tolist()) == {2, 5}
  _, test_labels = load_in_memory(config, "test")
  assert len(set(test_labels.tolist())) == 10  # the test split is never filtered
  with pytest.raises(ValueError, match="classes \\[42\\] do not occur"):
    load_in_memory(tiny_config(**{"dataset.train_classes": (42,)}), "train")
  with pytest.raises(ValueError, match="config.dataset.train_classes"):
    train_and_evaluate(tiny_config(**{"dataset.train_classes": (-1,)}), "/tmp/unused")


def tiny_method_config(**overrides):
  """``tiny_config`` on a ResNet-10 (one block per stage): for the tests that
  only need every method to take a few real data-parallel steps, where compile
  time dominates."""
  return tiny_config(**{"model.encoder": "resnet10", **overrides})


def test_gradient_clipping_bounds_the_update():
  config = tiny_config(**{"optim.grad_clip_norm": 1.0, "optim.weight_decay": 0.0, "optim.momentum": 0.0})
  tx, schedule = make_optimizer(config, steps_per_epoch=10, total_steps=10)
  params = {"w": jnp.zeros(3)}
  grads = {"w": jnp.array([30.0, 40.0, 0.0])}  # norm 50
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(jnp.linalg.norm(updates["w"]), float(schedule(0)) * 1.0, rtol=1e-5)
  with pytest.raises(ValueError, match=r"config\.optim\.grad_clip_norm=-1\.0"):
    config_lib.validate_config(tiny_config(**{"optim.grad_clip_norm": -1.0}), 8)


def test_adamw_first_step_is_the_closed_form_and_decays_only_the_matrices():
  """AdamW's first update is -lr * (g / (|g| + eps) + wd * p) on a matrix, and -lr * g / (|g| + eps) on a
  vector (no decay on biases and norm parameters); SGD decays both."""
  lr, wd = 0.1, 0.05
  overrides = {"optim.base_learning_rate": lr, "optim.lr_scaling": "none", "optim.weight_decay": wd}
  params = {"kernel": jnp.array([[1.0, -2.0], [0.5, 3.0]]), "bias": jnp.array([4.0, -1.0])}
  grads = {"kernel": jnp.array([[0.3, -0.1], [2.0, 0.0]]), "bias": jnp.array([-0.5, 0.25])}
  tx, schedule = make_optimizer(tiny_config(**overrides, **{"optim.optimizer": "adamw"}), 10, 10)
  assert float(schedule(0)) == pytest.approx(lr)
  updates, _ = tx.update(grads, tx.init(params), params)
  eps = 1e-8
  np.testing.assert_allclose(
    updates["kernel"], -lr * (grads["kernel"] / (np.abs(grads["kernel"]) + eps) + wd * params["kernel"]), rtol=1e-4
  )
  np.testing.assert_allclose(updates["bias"], -lr * grads["bias"] / (np.abs(grads["bias"]) + eps), rtol=1e-4)
  sgd, _ = make_optimizer(tiny_config(**overrides, **{"optim.momentum": 0.0}), 10, 10)
  sgd_updates, _ = sgd.update(grads, sgd.init(params), params)
  np.testing.assert_allclose(sgd_updates["bias"], -lr * (grads["bias"] + wd * params["bias"]), rtol=1e-6)
  with pytest.raises(ValueError, match=r"config\.optim\.optimizer='adam'.*\('sgd', 'adamw'\)"):
    config_lib.validate_config(tiny_config(**{"optim.optimizer": "adam"}), 8)
  with pytest.raises(ValueError, match=r"config\.optim\.adam_b2=1\.0"):
    config_lib.validate_config(tiny_config(**{"optim.adam_b2": 1.0}), 8)
