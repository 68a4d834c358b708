"""GNG (fixed-capacity arrays) against a plain-Python Fritzke GNG, its
invariants, and the SMC memory bank (weights, ESS, resampling, MoCo limit)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import log_softmax

from gjax.math.gng import GNGParams, gng_init, gng_mixture, gng_quantization_error, gng_step, gng_update
from gjax.math.memory_bank import (
  FIFO_QUEUE,
  SMCParams,
  bank_info_nce,
  bank_init,
  bank_insert,
  bank_move,
  bank_reweight,
  effective_sample_size,
  kernel_log_likelihood,
  smc_bank_step,
  systematic_resample,
)
from gjax.math.mixture import mixture_log_prob


def reference_gng(start, signals, capacity, p):
  """Fritzke (1995) with Python lists and a dict of edges, in float64."""
  nodes = [np.array(s, np.float64) for s in start]
  error = [0.0] * len(nodes)
  edges = {}  # frozenset({i, j}) -> age
  slots = list(range(len(nodes)))  # node slot ids in creation order; removed nodes leave holes
  alive = {i: True for i in slots}
  count = 0
  for x in signals:
    live = [i for i in alive if alive[i]]
    d = {i: float(np.sum((x - nodes[i]) ** 2)) for i in live}
    s1 = min(live, key=lambda i: (d[i], i))
    s2 = min((i for i in live if i != s1), key=lambda i: (d[i], i))
    for e in edges:
      if s1 in e:
        edges[e] += 1
    error[s1] += d[s1]
    nodes[s1] = nodes[s1] + p.epsilon_winner * (x - nodes[s1])
    for e in edges:
      if s1 in e:
        (n,) = e - {s1}
        nodes[n] = nodes[n] + p.epsilon_neighbor * (x - nodes[n])
    edges[frozenset((s1, s2))] = 0
    edges = {e: a for e, a in edges.items() if a <= p.max_age}
    for i in live:
      if not any(i in e for e in edges):
        alive[i] = False
    count += 1
    if count % p.insert_every == 0 and sum(alive.values()) < capacity:
      live = [i for i in alive if alive[i]]
      q = max(live, key=lambda i: (error[i], -i))
      neighbours = [next(iter(e - {q})) for e in edges if q in e]
      f = max(neighbours, key=lambda i: (error[i], -i))
      r = next(i for i in range(capacity) if not alive.get(i, False))
      while len(nodes) <= r:
        nodes.append(None)
        error.append(0.0)
      nodes[r] = 0.5 * (nodes[q] + nodes[f])
      alive[r] = True
      del edges[frozenset((q, f))]
      edges[frozenset((q, r))] = 0
      edges[frozenset((r, f))] = 0
      error[q] *= p.insert_error_decay
      error[f] *= p.insert_error_decay
      error[r] = error[q]
    error = [e * p.error_decay for e in error]
  live = sorted(i for i in alive if alive[i])
  return {i: nodes[i] for i in live}, {e: a for e, a in edges.items()}


def _ring(n, seed=0):
  rng = np.random.default_rng(seed)
  theta = rng.uniform(0, 2 * np.pi, n)
  return (np.stack([np.cos(theta), np.sin(theta)], -1) + 0.05 * rng.normal(size=(n, 2))).astype(np.float32)


def test_gng_matches_the_plain_python_algorithm():
  p = GNGParams(insert_every=25, max_age=20)
  x = _ring(400)
  start = x[:2]
  state = jax.jit(lambda s, v: gng_update(s, v, p))(gng_init(jnp.asarray(start), 12), jnp.asarray(x))
  ref_nodes, ref_edges = reference_gng(start.astype(np.float64), x.astype(np.float64), 12, p)
  active = np.flatnonzero(np.asarray(state.active))
  assert sorted(ref_nodes) == list(active)
  for i in active:
    np.testing.assert_allclose(state.nodes[i], ref_nodes[i], atol=1e-4)
  edges = np.asarray(state.edges)
  got = {frozenset((i, j)): int(state.ages[i, j]) for i in range(12) for j in range(i + 1, 12) if edges[i, j]}
  assert got == ref_edges


def test_gng_invariants_hold_after_every_signal():
  p = GNGParams(insert_every=10, max_age=8)
  x = _ring(300, seed=1)
  state = gng_init(jnp.asarray(x[:2]), 16)
  step = jax.jit(lambda s, v: gng_step(s, v, p))
  for v in x:
    state = step(state, jnp.asarray(v))
    edges, ages, active = (np.asarray(a) for a in (state.edges, state.ages, state.active))
    assert np.array_equal(edges, edges.T) and not edges.diagonal().any()  # symmetric, no self loops
    assert not edges[~active].any()  # edges only between active nodes
    assert np.all(ages[~edges] == 0) and ages.max() <= p.max_age  # ages reset off the edges
    assert np.all(edges[active].any(axis=1))  # no isolated active node
    assert 2 <= active.sum() <= 16
  assert active.sum() == 16  # grew to capacity: 300 signals / 10 > 14 insertions
  # After more signals the nodes that carry the mixture's weight lie on the ring
  # (a pair of nodes stranded inside, connected only to each other, never wins,
  # keeps its edge, as in Fritzke's algorithm, and decays to weight ~0).
  state = gng_update(state, jnp.asarray(_ring(5000, seed=2)), p)
  weights = np.asarray(jax.nn.softmax(gng_mixture(state, 0.01)[0]))
  radius = np.linalg.norm(np.asarray(state.nodes)[weights > 0.01], axis=-1)
  assert len(radius) >= 12
  np.testing.assert_allclose(radius, 1.0, atol=0.15)
  assert float(gng_quantization_error(state, jnp.asarray(x))) < 0.02


def test_gng_mixture_is_a_normalised_density_over_active_nodes():
  p = GNGParams(insert_every=10)
  x = _ring(200)
  state = gng_update(gng_init(jnp.asarray(x[:2]), 8), jnp.asarray(x), p)
  logits, means, var = gng_mixture(state, 0.01)
  weights = np.asarray(jax.nn.softmax(logits))
  assert np.all(weights[~np.asarray(state.active)] == 0) and abs(weights.sum() - 1) < 1e-6
  # Riemann sum of the 2-D density over a box covering the ring.
  g = np.linspace(-1.6, 1.6, 321)
  grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2).astype(np.float32)
  density = np.exp(np.asarray(mixture_log_prob(jnp.asarray(grid), logits, means, var, "isotropic")))
  np.testing.assert_allclose(density.sum() * (g[1] - g[0]) ** 2, 1.0, atol=1e-3)


def test_gng_rejects_bad_settings():
  with pytest.raises(ValueError, match="capacity 1 is below its start size 2"):
    gng_init(jnp.zeros((2, 3)), 1)
  with pytest.raises(ValueError, match="at least 2 start nodes"):
    gng_init(jnp.zeros((1, 3)), 4)
  with pytest.raises(ValueError, match="epsilon_winner"):
    gng_update(gng_init(jnp.eye(2), 4), jnp.zeros((3, 2)), GNGParams(epsilon_winner=0.0))
  with pytest.raises(ValueError, match="dimension 3, the GNG nodes 2"):
    gng_update(gng_init(jnp.eye(2), 4), jnp.zeros((3, 3)))


def _unit(rng, *shape):
  v = rng.normal(size=shape)
  return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def test_fifo_bank_is_a_moco_queue_and_its_loss_is_info_nce():
  rng = np.random.default_rng(0)
  bank = bank_init(12, 4)
  inserted = []
  step = jax.jit(lambda b, k, q, n: smc_bank_step(k, b, q, n, FIFO_QUEUE))
  for i in range(5):
    new = _unit(rng, 4, 4)
    bank, diag = step(bank, jax.random.PRNGKey(i), jnp.asarray(_unit(rng, 4, 4)), jnp.asarray(new))
    inserted.append(new)
  queue = np.concatenate(inserted)[-12:]  # the 12 newest keys
  assert sorted(map(tuple, np.asarray(bank.particles).round(6))) == sorted(map(tuple, queue.round(6)))
  np.testing.assert_allclose(np.exp(bank.log_weights), 1 / 12, rtol=1e-5)  # equal weights
  q, k = _unit(rng, 6, 4), _unit(rng, 6, 4)
  loss = bank_info_nce(jnp.asarray(q), jnp.asarray(k), bank, 0.2)
  logits = np.concatenate([np.sum(q * k, -1, keepdims=True), q @ queue.T], -1) / 0.2
  np.testing.assert_allclose(loss, -log_softmax(logits.astype(np.float64), axis=-1)[:, 0], rtol=1e-5)


def test_a_partly_filled_bank_ignores_its_empty_slots():
  rng = np.random.default_rng(1)
  keys = _unit(rng, 3, 4)
  bank = bank_insert(bank_init(10, 4), jnp.asarray(keys))
  assert int(bank.filled.sum()) == 3 and abs(float(jnp.exp(jax.nn.logsumexp(bank.log_weights))) - 1) < 1e-6
  q, k = _unit(rng, 2, 4), _unit(rng, 2, 4)
  logits = np.concatenate([np.sum(q * k, -1, keepdims=True), q @ keys.T], -1) / 0.5
  np.testing.assert_allclose(
    bank_info_nce(jnp.asarray(q), jnp.asarray(k), bank, 0.5), -log_softmax(logits, axis=-1)[:, 0], rtol=1e-5
  )
  grad = jax.grad(lambda q: bank_info_nce(q, jnp.asarray(k), bank, 0.5).sum())(jnp.asarray(q))
  assert np.all(np.isfinite(grad))


def test_reweighting_ess_and_systematic_resampling():
  rng = np.random.default_rng(2)
  bank = bank_insert(bank_init(8, 3), jnp.asarray(_unit(rng, 8, 3)))
  assert abs(float(effective_sample_size(bank)) - 8) < 1e-4
  ll = jnp.asarray(rng.normal(size=8).astype(np.float32)) * 3
  reweighted = bank_reweight(bank, ll, 1.0)
  w = np.exp(np.asarray(reweighted.log_weights))
  np.testing.assert_allclose(w, np.exp(log_softmax(np.asarray(ll, np.float64))), rtol=1e-5)
  np.testing.assert_allclose(effective_sample_size(reweighted), 1 / np.sum(w**2), rtol=1e-5)
  # Systematic resampling keeps M particles, each copied floor(M w) or ceil(M w) times.
  resampled = systematic_resample(jax.random.PRNGKey(0), reweighted)
  assert resampled.particles.shape == (8, 3)
  np.testing.assert_allclose(np.exp(resampled.log_weights), 1 / 8, rtol=1e-6)
  src = np.asarray(reweighted.particles)
  counts = np.array([np.sum(np.all(np.isclose(np.asarray(resampled.particles), p), -1)) for p in src])
  assert counts.sum() == 8 and np.all(counts >= np.floor(8 * w) - 1e-9) and np.all(counts <= np.ceil(8 * w) + 1e-9)
  # The full step resamples when the ESS falls below threshold * M and the weights stay normalised.
  params = SMCParams(reweight_strength=5.0, temperature=0.1, resample_threshold=0.9, move_std=0.01)
  new_bank, diag = smc_bank_step(
    jax.random.PRNGKey(1), bank, jnp.asarray(_unit(rng, 4, 3)), jnp.asarray(_unit(rng, 2, 3)), params
  )
  assert float(diag["resampled"]) == 1.0 and float(diag["ess"]) < 0.9 * 8
  assert abs(float(jnp.exp(jax.nn.logsumexp(new_bank.log_weights))) - 1) < 1e-5
  np.testing.assert_allclose(np.linalg.norm(new_bank.particles, axis=-1), 1.0, rtol=1e-5)
  moved = bank_move(jax.random.PRNGKey(3), bank, 0.1)
  assert not np.allclose(moved.particles, bank.particles)
  np.testing.assert_allclose(
    kernel_log_likelihood(jnp.asarray(src[:2]), bank, 0.5),
    np.log(np.mean(np.exp(src[:2] @ src.T / 0.5), axis=0)),
    rtol=1e-5,
  )


def test_bank_rejects_bad_input():
  with pytest.raises(ValueError, match="memory bank of 4 particles is smaller than the batch of 6"):
    bank_insert(bank_init(4, 2), jnp.zeros((6, 2)))
  with pytest.raises(ValueError, match="size and dim must be >= 1"):
    bank_init(0, 2)
  with pytest.raises(ValueError, match="temperature must be > 0"):
    smc_bank_step(
      jax.random.PRNGKey(0), bank_init(4, 2), jnp.zeros((2, 2)), jnp.zeros((2, 2)), SMCParams(temperature=0.0)
    )


def test_gradients_of_the_bank_loss_and_the_em_statistics():
  from gjax.math.mixture import mixture_statistics
  from tests.helpers import grad_check, x64

  with x64():
    rng = np.random.default_rng(3)
    bank = bank_insert(bank_init(6, 3, jnp.float64), jnp.asarray(_unit(rng, 4, 3), jnp.float64))
    q, k = (jnp.asarray(_unit(rng, 2, 3), jnp.float64) for _ in range(2))
    grad_check(lambda q, k: bank_info_nce(q, k, bank, 0.3), (q, k))
    x = jnp.asarray(rng.normal(size=(5, 2)))
    means, cov = jnp.asarray(rng.normal(size=(2, 2))), jnp.ones((2, 2))
    grad_check(lambda x: mixture_statistics(x, jnp.zeros(2), means, cov, "diag")[0].second, (x,))
