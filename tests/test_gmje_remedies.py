"""GMJE-EM (stepwise EM on stop-gradient embeddings) and GMJE-MDN: the math
against references, the heads' state handling, and that each keeps the
representation from collapsing where the naive batch-empirical loss does not."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats
from scipy.special import logsumexp

import gjax.math as gm
from gjax.models.density_heads import GNGDensity, OnlineEMMixtureDensity
from gjax.models.heads import MixtureDensityNetwork
from gjax.objectives import get_objective
from gjax.train import train_and_evaluate
from gjax.train.config import method_settings
from tests.test_train import tiny_config, tiny_method_config


def _blobs(n=600, seed=0):
  rng = np.random.default_rng(seed)
  centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
  labels = rng.integers(0, 3, n)
  return (centres[labels] + 0.5 * rng.normal(size=(n, 2))).astype(np.float32)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "isotropic"])
def test_online_em_with_unit_step_is_batch_em(covariance_type):
  x = _blobs()
  k, d = 3, 2
  means = x[[0, 1, 2]]
  cov = {"full": np.broadcast_to(np.eye(d), (k, d, d)), "diag": np.ones((k, d)), "isotropic": np.ones(k)}[
    covariance_type
  ].astype(np.float32)
  params = gm.MixtureParams(jnp.zeros(k), jnp.asarray(means), jnp.asarray(cov))
  stats0, _ = gm.mixture_statistics(x, *params, covariance_type)
  _, online, ll_online = gm.online_em_step(x, stats0, params, covariance_type, step_size=1.0)
  batch, ll_batch = gm.em_step(x, *params, covariance_type)
  for a, b in zip(online, batch):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert ll_online == ll_batch


def test_stepwise_em_on_minibatches_recovers_the_blobs():
  x = _blobs(3000)
  rng = np.random.default_rng(1)
  start = jnp.array([[-1.0, 1.0], [1.0, 1.0], [0.0, 2.0]])  # one per basin, far from the answer
  params = gm.MixtureParams(jnp.zeros(3), start, jnp.broadcast_to(jnp.eye(2), (3, 2, 2)))
  state, _ = gm.mixture_statistics(x[:100], *params, "full")
  step = jax.jit(lambda b, s, p: gm.online_em_step(b, s, p, "full", step_size=0.1))
  for _ in range(300):
    state, params, _ = step(x[rng.choice(len(x), 100)], state, params)
  # Sorted component means match the true centres; weights near 1/3; covariances near 0.25 I.
  order = np.lexsort(np.asarray(params.means).T[::-1])
  np.testing.assert_allclose(np.asarray(params.means)[order], [[-3, 0], [0, 4], [3, 0]], atol=0.25)
  np.testing.assert_allclose(jax.nn.softmax(params.logits), 1 / 3, atol=0.08)
  cov = np.einsum("kij,klj->kil", params.cov, params.cov)
  np.testing.assert_allclose(cov, np.broadcast_to(0.25 * np.eye(2), (3, 2, 2)), atol=0.12)


def test_m_step_keeps_an_empty_component_and_floors_the_covariance():
  x = np.zeros((8, 2), np.float32)  # zero spread: the floor alone makes the covariance
  params = gm.MixtureParams(jnp.array([0.0, 0.0]), jnp.array([[0.0, 0.0], [50.0, 50.0]]), jnp.ones((2, 2)))
  new, _ = gm.em_step(x, *params, "diag", cov_floor=1e-3)
  np.testing.assert_allclose(new.means[1], [50.0, 50.0])  # empty: unchanged
  np.testing.assert_allclose(new.cov[0], [1e-3, 1e-3], rtol=1e-4)
  with pytest.raises(ValueError, match="step_size"):
    gm.online_em_step(x, gm.mixture_statistics(x, *params, "diag")[0], params, "diag", step_size=0.0)


def test_em_head_initialises_from_the_first_batch_and_updates_its_state():
  rng = np.random.default_rng(0)
  z1, z2 = rng.normal(size=(2, 64, 3)).astype(np.float32)
  head = OnlineEMMixtureDensity(dim=6, num_components=4, covariance_type="full", step_size=0.5)
  variables = head.init(jax.random.PRNGKey(0))
  assert not variables["density_em"]["initialized"]
  outputs = {"z_1": jnp.asarray(z1), "z_2": jnp.asarray(z2)}
  eval_out = head.apply(variables, outputs, train=False)  # eval: reads the state, changes nothing
  np.testing.assert_array_equal(eval_out["density_means"], 0.0)
  out, updates = head.apply(variables, outputs, train=True, mutable=["density_em"])
  state = updates["density_em"]
  assert state["initialized"] and np.all(np.isfinite(out["density_cov"]))
  np.testing.assert_allclose(out["density_means"], state["means"])
  np.testing.assert_allclose(jax.nn.softmax(state["logits"]).sum(), 1.0, rtol=1e-6)

  # The loss's gradient reaches the embeddings but the EM parameters are constants.
  def nll(z):
    o = head.apply(variables, {"z_1": z, "z_2": outputs["z_2"]}, train=True, mutable=["density_em"])[0]
    u = jnp.concatenate([z, outputs["z_2"]], -1)
    return -gm.mixture_log_prob(u, o["density_logits"], o["density_means"], o["density_cov"]).mean()

  grad = jax.grad(nll)(outputs["z_1"])
  assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
  with pytest.raises(ValueError, match="dimension 6, the density expects 8"):
    OnlineEMMixtureDensity(dim=8).apply(
      OnlineEMMixtureDensity(dim=8).init(jax.random.PRNGKey(0)), outputs, train=True, mutable=["density_em"]
    )


def test_mdn_loss_matches_scipy():
  rng = np.random.default_rng(0)
  b, d, k = 6, 3, 2
  z1, z2 = rng.normal(size=(2, b, d)).astype(np.float32)
  head = MixtureDensityNetwork(latent_dim=d, num_components=k, hidden=8)
  params = head.init(jax.random.PRNGKey(0), z1)
  params = jax.tree_util.tree_map(lambda p: p + 0.2 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
  out = {"z_1": z1, "z_2": z2}
  for i, z in ((1, z1), (2, z2)):
    out.update({f"{key}_{i}": v for key, v in head.apply(params, z).items()})
  hp = method_settings("gmje_mdn")
  hp.marginal_weight = 0.3
  rng_key = jax.random.PRNGKey(2)
  loss, metrics = get_objective("gmje_mdn").loss_fn(out, rng_key, hp)

  def ref_nll(c, t):
    logits, means, var = (np.asarray(out[f"mdn_{n}_{c}"], np.float64) for n in ("logits", "means", "var"))
    target = np.asarray(out[f"z_{t}"], np.float64)
    rows = []
    for n in range(b):
      comps = [stats.multivariate_normal(means[n, j], np.diag(var[n, j])).logpdf(target[n]) for j in range(k)]
      rows.append(logsumexp(np.array(comps) + logits[n] - logsumexp(logits[n])))
    return -np.mean(rows)

  nll = 0.5 * (ref_nll(1, 2) + ref_nll(2, 1))
  marginal = float(gm.sliced_epps_pulley(rng_key, jnp.concatenate([z1, z2]), hp.num_slices))
  np.testing.assert_allclose(metrics["nll"], nll, rtol=1e-5)
  np.testing.assert_allclose(loss, nll + 0.3 * marginal, rtol=1e-5)

  # Stop-gradient on the target: no gradient from the conditional term into z_t.
  def nll_of_target(z_2):
    o = dict(out, z_2=z_2)
    return get_objective("gmje_mdn").loss_fn(o, rng_key, _with(hp, marginal_weight=0.0, symmetric=False))[0]

  np.testing.assert_array_equal(jax.grad(nll_of_target)(jnp.asarray(z2)), 0.0)


def _with(hp, **changes):
  hp = hp.copy_and_resolve_references()
  for key, value in changes.items():
    hp[key] = value
  return hp


def _train_linear(method, steps, hp, k=3):
  """Adam on a linear encoder ``z = x W`` of two noisy views, with the method's head."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 6)).astype(np.float32)
  x1, x2 = (x + 0.1 * rng.normal(size=x.shape).astype(np.float32) for _ in range(2))
  objective = get_objective(method)
  params = {"W": jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32))}
  state = {}
  if objective.head == "mdn":
    head = MixtureDensityNetwork(latent_dim=3, num_components=k, hidden=32)
    params["head"] = head.init(jax.random.PRNGKey(0), x1[:, :3])["params"]
  elif objective.head == "gng_density":
    head = GNGDensity(dim=6, capacity=16, params=gm.GNGParams(insert_every=20))
    state = head.init(jax.random.PRNGKey(0))
  else:
    head = OnlineEMMixtureDensity(dim=6, num_components=k, covariance_type="full", step_size=0.1)
    state = head.init(jax.random.PRNGKey(0))
  tx = optax.adam(0.01)

  @jax.jit
  def step(params, state, opt_state, key):
    def loss_fn(p):
      outputs = {"z_1": x1 @ p["W"], "z_2": x2 @ p["W"]}
      new_state = state
      if objective.head == "mdn":
        for i in (1, 2):
          outputs.update({f"{n}_{i}": v for n, v in head.apply({"params": p["head"]}, outputs[f"z_{i}"]).items()})
      else:
        density, new_state = head.apply(state, outputs, train=True, mutable=list(state))
        outputs.update(density)
      loss, metrics = objective.loss_fn(outputs, key, hp)
      return loss, (metrics, new_state)

    (_, (metrics, state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), state, opt_state, metrics

  opt_state = tx.init(params)
  history = []
  for i in range(steps):
    params, state, opt_state, metrics = step(params, state, opt_state, jax.random.PRNGKey(i))
    history.append({name: float(v) for name, v in metrics.items()})
  return history


@pytest.mark.parametrize("method", ["gmje_em", "gmje_mdn", "gmje_gng"])
def test_remedy_keeps_every_direction_where_the_naive_loss_collapses(method):
  if method == "gmje_em":
    hp = _with(method_settings("gmje"), fit="em", num_components=3)
    history = _train_linear("gmje", 300, hp)
  elif method == "gmje_gng":
    history = _train_linear("gmje_gng", 300, method_settings("gmje_gng"))
    assert history[-1]["gng_active"] == 16  # the graph grew to capacity
  else:
    history = _train_linear("gmje_mdn", 300, method_settings("gmje_mdn"))
  # Same data, encoder and optimiser as tests/test_gmje.py's naive run (rank < 1.5).
  assert history[-1]["z_effective_rank"] > 2.8
  assert 0.5 < history[-1]["z_std_mean"] < 2.0
  assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.parametrize(
  "method,overrides",
  [
    (
      "gmje",
      {
        "gmje.fit": "em",
        "gmje.num_components": 2,
        "gmje.covariance_type": "diag",
        "gmje.em_cov_floor": 0.5,
        "gmje.log_det_weight": 1.0,
        "gmje.log_det_form": "component",
      },
    ),
    ("gmje_mdn", {"gmje_mdn.num_components": 2, "gmje_mdn.hidden": 16}),
    ("gmje_gng", {"gmje_gng.capacity": 8, "gmje_gng.insert_every": 8}),
    (
      "gmje_smc",
      {
        "gmje_smc.bank_size": 24,
        "gmje_smc.reweight_strength": 1.0,
        "gmje_smc.resample_threshold": 0.9,
        "gmje_smc.move_std": 0.01,
      },
    ),
  ],
)
def test_remedies_train_through_the_shared_trainer_on_8_devices(tmp_path, method, overrides):
  assert jax.device_count() == 8
  config = tiny_method_config(**{"method": method, "num_train_steps": 2, **overrides})
  summary = train_and_evaluate(config, str(tmp_path))
  assert summary["final_step"] == 2 and np.isfinite(summary["metrics"]["loss"])
  if method == "gmje":
    assert np.isfinite(summary["metrics"]["log_det_barrier"])
  state = summary["state"]
  if method == "gmje":
    assert bool(state.model_state["density_em"]["density"]["initialized"])
    assert "density" not in state.params  # EM parameters are state, not trained by gradient
    # The configured floor reaches the M-step (the tiny model's variances are far below 0.5).
    assert float(state.model_state["density_em"]["density"]["cov"].min()) >= 0.5
    # A resumed run restores the EM state too.
    again = train_and_evaluate(
      tiny_method_config(**{"method": method, "num_train_steps": 3, "resume_with_changed_config": True, **overrides}),
      str(tmp_path),
    )
    assert again["start_step"] == 2 and again["final_step"] == 3
  elif method == "gmje_mdn":
    assert "mdn_var_1" not in state.params and "head" in state.params
  elif method == "gmje_gng":
    assert int(state.model_state["gng"]["density"]["active"].sum()) >= 2
  else:
    bank = state.model_state["memory_bank"]["density"]
    assert int(bank["filled"].sum()) == 24  # two steps of 16 in a bank of 24: full, FIFO-wrapped
    np.testing.assert_allclose(np.exp(bank["log_weights"]).sum(), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
  "field,value,message",
  [
    ("gmje.fit", "sgd", "config.gmje.fit='sgd'"),
    ("gmje.em_step_size", 0.0, "config.gmje.em_step_size=0.0"),
    ("gmje.em_cov_floor", 0.0, "config.gmje.em_cov_floor=0.0"),
    ("gmje_mdn.num_components", 0, "config.gmje_mdn.num_components=0"),
    ("gmje_gng.capacity", 1, "config.gmje_gng.capacity=1"),
    ("gmje_smc.bank_size", 8, "config.gmje_smc.bank_size=8"),
  ],
)
def test_bad_remedy_config(tmp_path, field, value, message):
  method = field.split(".")[0]
  with pytest.raises(ValueError, match=message.replace(".", r"\.")):
    train_and_evaluate(tiny_config(**{"method": method, field: value}), str(tmp_path))
