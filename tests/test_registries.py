"""A method is one module: its settings, checks, head and loss, registered by
name; the trainer and the models know no method. Momentum target networks
(BYOL, MoCo) in the train state."""

import json
import os
import tokenize

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gjax import data as gdata
from gjax import math as gm
from gjax.models import Head, register_head
from gjax.objectives import Objective, get_objective, register, registered_methods, require, target_momentum_at
from gjax.train import config as config_lib
from gjax.train import train_and_evaluate
from gjax.train.config import base_config, drop_other_method_sections, with_method
from gjax.train.input_pipeline import build_train_input
from gjax.train.plan import plan_for_input
from tests.test_train import tiny_method_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- a toy method in one file
# Everything the toy method is: a head kind with its own Flax module, a loss,
# settings with defaults and a check. Nothing else in gjax changes.


class ScaleHead(nn.Module):
  dim: int
  init_scale: float

  @nn.compact
  def __call__(self, z, train: bool = False):
    scale = self.param("scale", lambda key: jnp.full((self.dim,), self.init_scale))
    return {"scaled": z * scale}


register_head(
  "toy_scale",
  lambda latent_dim, model_config, dtype, *, init_scale: Head(
    per_view=ScaleHead(dim=latent_dim, init_scale=init_scale)
  ),
)


def toy_loss(outputs, rng, hparams):
  del rng
  alignment = jnp.mean(jnp.sum(jnp.square(outputs["scaled_1"] - jax.lax.stop_gradient(outputs["z_2"])), -1))
  spread = jnp.mean(jax.nn.relu(1.0 - jnp.std(outputs["z_1"], axis=0)))
  loss = alignment + hparams.spread_weight * spread
  return loss, {"loss": loss, "toy_alignment": alignment, "toy_spread": spread}


def check_toy(t, config):
  del config
  require(t.spread_weight >= 0, "toy.spread_weight", t.spread_weight, "must be >= 0")


register(
  Objective(
    "toy",
    toy_loss,
    head="toy_scale",
    defaults={"spread_weight": 2.0, "init_scale": 1.0},
    check=check_toy,
    head_settings=lambda t: {"init_scale": t.init_scale},
  )
)


def test_a_method_in_one_file_trains_with_no_other_change(tmp_path):
  config = tiny_method_config(**{"method": "toy", "toy.spread_weight": 0.5, "num_train_steps": 2})
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == 2
  assert set(summary["metrics"]) >= {"toy_alignment", "toy_spread"}  # its own parts are logged
  params = jax.device_get(summary["state"].params)
  assert "head" in params and "scale" in params["head"]  # its head was built and trained
  assert not np.allclose(params["head"]["scale"], 1.0)
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["toy"] == {"spread_weight": 0.5, "init_scale": 1.0}
  assert not set(saved) & (set(registered_methods()) - {"toy"})  # only the chosen method's section
  with pytest.raises(ValueError, match=r"config\.toy\.spread_weight=-1\.0 is invalid: must be >= 0"):
    config_lib.validate_config(tiny_method_config(**{"method": "toy", "toy.spread_weight": -1.0}), 8)


def test_a_config_holds_only_its_methods_section():
  for method in registered_methods():
    config = base_config(method)
    assert method in config and not set(config) & (set(registered_methods()) - {method})
    config_lib.validate_config(config, 1)
  config = base_config("vje")
  config.method = "simclr"  # as --config.method=simclr on a VJE config would
  with pytest.raises(ValueError, match=r"config\.method='simclr' .*section of method 'vje'.*method=simclr"):
    config_lib.validate_config(config, 1)
  moved = with_method(base_config("vje"), "simclr")
  config_lib.validate_config(moved, 1)
  assert moved.simclr.temperature == 0.2 and "vje" not in moved


def test_a_config_json_with_every_methods_section_still_loads():
  """Runs before methods owned their settings wrote all 13 sections into config.json."""
  saved = json.loads(base_config("gje").to_json())
  saved["vje"] = dict(get_objective("vje").defaults)
  saved["moco"] = {"bank_size": 4096, "temperature": 0.2, "symmetric": True}
  import ml_collections

  config = ml_collections.ConfigDict(drop_other_method_sections(saved))
  config_lib.validate_config(config, 1)
  assert "vje" not in config and config.gje.num_components == 1


def test_a_config_json_from_before_later_fields_loads_with_their_defaults(tmp_path):
  """A GJE run from before the per-view augmentation probabilities and the log-det barrier (its
  config.json has neither): it loads, validates and gets the defaults that are the earlier behaviour;
  its own evaluators are kept as they were, none added."""
  from gjax.eval import evaluator_settings
  from gjax.eval.registry import load_run_config

  saved = json.loads(base_config("gje").to_json())
  saved["augment"] = {"crop_scale_min": 0.2, "blur": "auto"}
  del saved["gje"]["log_det_weight"]
  saved["eval"]["evaluators"] = json.loads(evaluator_settings("knn").to_json())
  (tmp_path / "config.json").write_text(json.dumps(saved))
  config = load_run_config(str(tmp_path))
  config_lib.validate_config(config, 1)
  assert tuple(config.augment.flip_prob) == (0.5, 0.5) and tuple(config.augment.jitter_prob) == (0.8, 0.8)
  assert config.gje.log_det_weight == 0.0 and list(config.eval.evaluators.keys()) == ["knn"]


def test_registering_the_same_name_twice_or_a_target_method_without_its_settings_fails():
  with pytest.raises(ValueError, match="already registered"):
    register(Objective("vje", toy_loss))
  with pytest.raises(ValueError, match="target_momentum"):
    register(Objective("toy_target", toy_loss, target_network=True))
  with pytest.raises(ValueError, match="already registered"):
    register_head("predictor", lambda *a, **k: Head())


def _code_tokens(path):
  """NAME and non-docstring STRING tokens of a module (comments and docstrings cite the papers)."""
  with open(path) as f:
    tokens = list(tokenize.generate_tokens(f.readline))
  out, previous = [], tokenize.NEWLINE
  for tok in tokens:
    if tok.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.NL):
      pass  # a docstring or a bare string statement
    elif tok.type in (tokenize.NAME, tokenize.STRING):
      out.append(tok.string)
    if tok.type not in (tokenize.COMMENT, tokenize.NL):
      previous = tok.type
  return out


#: Evaluators that belong to named methods: VJE's posterior scores and its one-class evaluator
#: (Section 5.3). (The studies of named methods live in studies/, outside the library.)
METHOD_OWN_MODULES = {"gjax/eval/anomaly.py", "gjax/eval/one_class.py"}


def test_the_trainer_and_the_models_name_no_method():
  methods = [m for m in registered_methods() if m not in ("toy",)]
  offenders = []
  for layer in ("gjax/train", "gjax/models", "gjax/eval"):
    for name in sorted(os.listdir(os.path.join(REPO, layer))):
      path = f"{layer}/{name}"
      if not name.endswith(".py") or path in METHOD_OWN_MODULES:
        continue
      words = " ".join(_code_tokens(os.path.join(REPO, path))).lower()
      offenders += [
        (path, m)
        for m in methods
        if any(w == m or w.strip("'\"") == m or f"{m}_" in w or f"_{m}" in w or f"{m}." in w for w in words.split())
      ]
  assert not offenders, offenders


def test_gjax_train_imports_nothing_from_gjax_eval():
  import ast

  for name in sorted(os.listdir(os.path.join(REPO, "gjax/train"))):
    if not name.endswith(".py"):
      continue
    tree = ast.parse(open(os.path.join(REPO, "gjax/train", name)).read())
    for node in ast.walk(tree):  # module-level and function-level imports alike
      if isinstance(node, ast.Import):
        assert not any(a.name.startswith("gjax.eval") for a in node.names), (name, node.lineno)
      elif isinstance(node, ast.ImportFrom):
        assert not (node.module or "").startswith("gjax.eval"), (name, node.lineno)
        assert not (node.module == "gjax" and any(a.name == "eval" for a in node.names)), (name, node.lineno)


def test_online_evaluation_without_an_evaluator_is_an_error_not_a_silent_skip(tmp_path):
  config = tiny_method_config(**{"eval.every_epochs": 1.0})
  with pytest.raises(ValueError, match=r"config\.eval\.every_epochs=1\.0 asks for evaluation during training"):
    train_and_evaluate(config, str(tmp_path))


# --------------------------------------------------------------------------- momentum target networks


def test_target_momentum_schedules():
  hp = base_config("byol").byol
  np.testing.assert_allclose(float(target_momentum_at(hp, 0, 100)), 0.99, rtol=1e-6)
  np.testing.assert_allclose(float(target_momentum_at(hp, 50, 100)), 1 - 0.01 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(float(target_momentum_at(hp, 100, 100)), 1.0, rtol=1e-6)
  assert float(target_momentum_at(base_config("moco").moco, 77, 100)) == pytest.approx(0.99)
  with pytest.raises(ValueError, match=r"config\.byol\.target_momentum=0\.0 .*must be > 0"):
    config_lib.validate_config(tiny_method_config(**{"method": "byol", "byol.target_momentum": 0.0}), 8)
  with pytest.raises(ValueError, match=r"config\.moco\.target_momentum=1\.0 .*\[0, 1\)"):
    config_lib.validate_config(tiny_method_config(**{"method": "moco", "moco.target_momentum": 1.0}), 8)


TARGET_RUNS = {
  "byol": {"byol.predictor_hidden": 16},
  "moco": {"moco.bank_size": 64, "model.projector": True, "model.projector_dim": 16, "model.projector_hidden": 16},
}


@pytest.mark.parametrize("method", sorted(TARGET_RUNS))
def test_a_momentum_target_trains_on_8_devices_follows_the_ema_and_resumes_bitwise(method, tmp_path):
  """One config (one compiled step): its run stopped after step 1 checks the EMA, then resumes and
  ends bitwise where the uninterrupted run ends."""
  assert jax.device_count() == 8
  config = tiny_method_config(
    method=method, num_train_steps=4, checkpoint_every_steps=2, log_every_steps=2, **TARGET_RUNS[method]
  )
  first = train_and_evaluate(config, str(tmp_path / "resumed"), stop_after_steps=1)
  assert first["final_step"] == 1
  state_1 = jax.device_get(first["state"])
  # After one step the target is τ_0 · θ_0 + (1 - τ_0) · θ_1 (θ_0: the initial parameters, the same seed).
  tau = get_objective(method).defaults["target_momentum"]
  initial = jax.device_get(plan_for_input(config, build_train_input(config), gdata.data_mesh()).initial_state())
  chex.assert_trees_all_equal(initial.target_params, initial.params)
  expected = jax.tree_util.tree_map(lambda a, b: tau * a + (1 - tau) * b, initial.params, state_1.params)
  chex.assert_trees_all_close(state_1.target_params, expected, rtol=1e-5, atol=1e-7)
  assert jax.tree_util.tree_structure(state_1.target_params) == jax.tree_util.tree_structure(state_1.params)
  # (MoCo's first step has an empty queue: only weight decay moves the parameters, by ~1e-7.)
  assert not all(
    np.array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(state_1.target_params), jax.tree_util.tree_leaves(state_1.params))
  )

  full = train_and_evaluate(config, str(tmp_path / "full"))
  chex.assert_tree_all_finite(full["state"].target_params)
  assert full["metrics"]["loss"] == full["metrics"]["loss"]
  second = train_and_evaluate(config, str(tmp_path / "resumed"))
  assert second["start_step"] == 1 and second["final_step"] == 4
  a, b = jax.device_get(full["state"]), jax.device_get(second["state"])
  for field in ("params", "target_params", "opt_state", "model_state"):
    jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(a, field), getattr(b, field))


def test_moco_without_momentum_is_the_one_network_variant(tmp_path):
  """``moco.target_momentum = 0``: no target in the state, keys from the online network (the earlier MoCo)."""
  overrides = {"method": "moco", "moco.target_momentum": 0.0, "num_train_steps": 1, **TARGET_RUNS["moco"]}
  summary = train_and_evaluate(tiny_method_config(**overrides), str(tmp_path))
  assert summary["state"].target_params == {}
  assert "target_momentum" not in summary["metrics"]


def test_the_memory_bank_queues_the_targets_keys():
  from gjax.models.density_heads import MemoryBank

  bank = MemoryBank(size=8, dim=3)
  variables = bank.init(jax.random.PRNGKey(0))
  z = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
  keys = jax.random.normal(jax.random.PRNGKey(2), (4, 3))
  _, updated = bank.apply(variables, {"z_1": z, "z_2": z, "target_z_2": keys}, train=True, mutable=["memory_bank"])
  queued = np.asarray(updated["memory_bank"]["particles"])
  np.testing.assert_allclose(
    np.sort(queued[np.asarray(updated["memory_bank"]["filled"])], axis=0),
    np.sort(np.asarray(gm.normalize(keys)), axis=0),
    rtol=1e-6,
  )


def test_byol_loss_is_twice_two_minus_two_cosines():
  rng = np.random.default_rng(0)
  p_1, p_2, t_1, t_2, z = (jnp.asarray(rng.normal(size=(5, 4)), jnp.float32) for _ in range(5))
  loss, metrics = get_objective("byol").loss_fn(
    {"p_1": p_1, "p_2": p_2, "target_z_1": t_1, "target_z_2": t_2, "z_1": z, "z_2": z}, None, base_config("byol").byol
  )
  cos = lambda a, b: np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
  expected = np.mean(2 - 2 * cos(np.asarray(p_1), np.asarray(t_2))) + np.mean(
    2 - 2 * cos(np.asarray(p_2), np.asarray(t_1))
  )
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  grads = jax.grad(
    lambda t: get_objective("byol").loss_fn(
      {"p_1": p_1, "p_2": p_2, "target_z_1": t, "target_z_2": t_2, "z_1": z, "z_2": z}, None, base_config("byol").byol
    )[0]
  )(t_1)
  np.testing.assert_array_equal(np.asarray(grads), 0.0)  # the target is a constant


# --------------------------------------------------------------------------- a toy evaluator in one file


def run_mean_norm(context, settings):
  """Mean ||z|| of the test split, and the fraction of it above ``settings.threshold``."""
  norms = np.linalg.norm(context.features("test")["z"], axis=-1)
  return {"toy_mean_norm": float(norms.mean()), "toy_above": float(np.mean(norms > settings.threshold))}


def check_mean_norm(s, config):
  require(s.threshold >= 0, "eval.evaluators.mean_norm.threshold", s.threshold, "must be >= 0")


from gjax.eval import Evaluator, evaluate, evaluator_settings, register_evaluator, validate_evaluators  # noqa: E402

register_evaluator(Evaluator("mean_norm", run_mean_norm, defaults={"threshold": 1.0}, check=check_mean_norm))


def test_an_evaluator_in_one_file_runs_online_and_in_eval_with_no_other_change(tmp_path):
  import gjax.eval
  from gjax.train.metrics import read_metrics

  config = tiny_method_config(**{"num_train_steps": 2, "eval.num_train_examples": 64})
  config.eval.evaluators = evaluator_settings("knn", "mean_norm")
  config.eval.evaluators.knn.weighted_k = 20
  config.eval.evaluators.mean_norm.threshold = 0.5
  config.eval.online_evaluators = ("mean_norm",)
  config.eval.every_epochs = 1 / 128  # every step of the 2048-image synthetic set at batch 16
  gjax.eval.train_and_evaluate(config, str(tmp_path))
  online = read_metrics(str(tmp_path / "eval.jsonl"))
  assert [r["step"] for r in online] == [1, 2] and all(r["toy_mean_norm"] > 0 for r in online)
  results = evaluate(config, str(tmp_path))
  assert results["toy_mean_norm"] == pytest.approx(online[-1]["toy_mean_norm"], rel=1e-5)
  assert 0 <= results["toy_above"] <= 1 and "knn30_z" in results
  saved = json.loads((tmp_path / "eval_results.json").read_text())
  assert saved["toy_mean_norm"] == results["toy_mean_norm"]
  config.eval.evaluators.mean_norm.threshold = -1.0
  with pytest.raises(ValueError, match=r"config\.eval\.evaluators\.mean_norm\.threshold=-1\.0 is invalid"):
    validate_evaluators(config)
  config.eval.evaluators.mean_norm.threshold = 0.5
  config.eval.evaluators.mean_norm.unlock()
  config.eval.evaluators.mean_norm.tresh = 1.0
  with pytest.raises(ValueError, match=r"config\.eval\.evaluators\.mean_norm\.tresh=1\.0 .*unknown field"):
    validate_evaluators(config)


def test_evaluator_selection_errors_name_the_field():
  config = tiny_method_config()
  config.eval.run_only = ("knn", "fid")
  with pytest.raises(ValueError, match=r"config\.eval\.run_only=\('knn', 'fid'\) .*\['fid'\] are not among"):
    config_lib.validate_config(config, 8)
  config = tiny_method_config(**{"eval.every_epochs": 1.0, "eval.online_evaluators": ()})
  with pytest.raises(ValueError, match=r"config\.eval\.every_epochs=1\.0 .*online_evaluators is empty"):
    config_lib.validate_config(config, 8)
