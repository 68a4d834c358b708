"""Growing Neural Gas (Fritzke, 1995) in fixed-capacity arrays, and the mixture
it defines (design doc ``gje-formulation.md``, "Remedies": GMJE-GNG).

GNG places prototypes along the data's ridges and grows the graph where the
accumulated quantisation error is largest. Classic implementations use linked
lists; here every array has the static ``capacity`` and an ``active`` mask, so
an update is one ``lax.scan`` over the signals and jits.

One signal ``x`` (Fritzke's algorithm, step by step):

1. winner ``s1`` and runner-up ``s2`` among the active nodes;
2. the ages of ``s1``'s edges grow by one;
3. ``error[s1] += ||x - w_s1||²`` and ``wins[s1] += 1``;
4. ``w_s1 += ε_b (x - w_s1)``; every neighbour ``n`` of ``s1``:
   ``w_n += ε_n (x - w_n)``;
5. the edge ``s1 - s2`` is created or refreshed (age 0);
6. edges older than ``max_age`` are removed, then nodes left without an edge;
7. every ``insert_every`` (λ) signals, while there is room: ``q`` = the active
   node of largest error, ``f`` = its neighbour of largest error, a node ``r``
   at ``(w_q + w_f) / 2`` replaces the edge ``q - f`` by ``q - r`` and
   ``r - f``; ``error[q]`` and ``error[f]`` are multiplied by α and ``r``
   starts with the new ``error[q]``;
8. every error (and win count) decays by the factor ``d``.

As mixture components (:func:`gng_mixture`) the active nodes are the means,
each with an isotropic variance, and the mixing weights follow the decayed win
counts.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gjax.math import _checks

_ABSENT = -1e30  # logit of an inactive node: exp(-1e30 - max) is exactly 0


class GNGParams(NamedTuple):
  """Fritzke's hyperparameters (his defaults; ``insert_every`` is λ)."""

  epsilon_winner: float = 0.05
  epsilon_neighbor: float = 0.006
  max_age: int = 50
  insert_every: int = 100
  insert_error_decay: float = 0.5  # α
  error_decay: float = 0.995  # d


#: Fritzke's defaults, the default of every function here that takes params.
DEFAULT_GNG_PARAMS = GNGParams()


class GNGState(NamedTuple):
  """``nodes [C, D]``, ``active [C]``, ``error [C]``, ``wins [C]``,
  ``edges [C, C]`` (symmetric, no self loops), ``ages [C, C]`` (0 off the
  edges) and the number of ``signals`` seen."""

  nodes: jax.Array
  active: jax.Array
  error: jax.Array
  wins: jax.Array
  edges: jax.Array
  ages: jax.Array
  signals: jax.Array


def _check_params(params: GNGParams) -> None:
  for name in ("epsilon_winner", "epsilon_neighbor", "insert_error_decay", "error_decay"):
    value = getattr(params, name)
    if not 0.0 < value <= 1.0:
      raise ValueError(f"GNG {name} must be in (0, 1], got {value}")
  for name in ("max_age", "insert_every"):
    if getattr(params, name) < 1:
      raise ValueError(f"GNG {name} must be >= 1, got {getattr(params, name)}")


def gng_init(start_nodes, capacity: int) -> GNGState:
  """A graph with the rows of ``start_nodes [S, D]`` active (S >= 2) and room
  for ``capacity`` nodes; no edges yet (the first signal connects two)."""
  _checks.check_ndim("start_nodes", start_nodes, 2)
  start, dim = start_nodes.shape
  if start < 2:
    raise ValueError(f"GNG needs at least 2 start nodes, got {start}")
  if capacity < start:
    raise ValueError(f"GNG capacity {capacity} is below its start size {start}")
  nodes = jnp.zeros((capacity, dim), start_nodes.dtype).at[:start].set(start_nodes)
  return GNGState(
    nodes=nodes,
    active=jnp.arange(capacity) < start,
    error=jnp.zeros((capacity,), start_nodes.dtype),
    wins=jnp.zeros((capacity,), start_nodes.dtype),
    edges=jnp.zeros((capacity, capacity), jnp.bool_),
    ages=jnp.zeros((capacity, capacity), jnp.int32),
    signals=jnp.zeros((), jnp.int32),
  )


def _set_edge(edges, ages, i, j, present):
  edges = edges.at[i, j].set(present).at[j, i].set(present)
  ages = ages.at[i, j].set(0).at[j, i].set(0)
  return edges, ages


def _insert_node(state: GNGState, params: GNGParams) -> GNGState:
  nodes, active, error, wins, edges, ages, signals = state
  q = jnp.argmax(jnp.where(active, error, -jnp.inf))
  f = jnp.argmax(jnp.where(edges[q], error, -jnp.inf))
  r = jnp.argmin(active)  # first free slot (the caller checks there is one)
  nodes = nodes.at[r].set(0.5 * (nodes[q] + nodes[f]))
  edges, ages = _set_edge(edges, ages, q, f, False)
  edges, ages = _set_edge(edges, ages, q, r, True)
  edges, ages = _set_edge(edges, ages, r, f, True)
  error = error.at[q].multiply(params.insert_error_decay).at[f].multiply(params.insert_error_decay)
  error = error.at[r].set(error[q])
  wins = wins.at[r].set(0.5 * (wins[q] + wins[f]))
  return GNGState(nodes, active.at[r].set(True), error, wins, edges, ages, signals)


def gng_step(state: GNGState, x: jax.Array, params: GNGParams = DEFAULT_GNG_PARAMS) -> GNGState:
  """Adapts the graph to one signal ``x [D]`` (steps 1-8 above)."""
  nodes, active, error, wins, edges, ages, signals = state
  dist2 = jnp.where(active, jnp.sum(jnp.square(nodes - x), axis=-1), jnp.inf)
  s1 = jnp.argmin(dist2)
  s2 = jnp.argmin(dist2.at[s1].set(jnp.inf))
  ages = ages + (edges & (jnp.arange(ages.shape[0]) == s1)[:, None]).astype(ages.dtype)
  ages = ages + (edges & (jnp.arange(ages.shape[0]) == s1)[None, :]).astype(ages.dtype)
  error = error.at[s1].add(dist2[s1])
  wins = wins.at[s1].add(1.0)
  rate = jnp.where(edges[s1], params.epsilon_neighbor, 0.0).at[s1].set(params.epsilon_winner)
  nodes = nodes + rate[:, None] * (x - nodes)
  edges, ages = _set_edge(edges, ages, s1, s2, True)
  edges = edges & (ages <= params.max_age)
  ages = jnp.where(edges, ages, 0)
  active = active & jnp.any(edges, axis=1)
  signals = signals + 1
  state = GNGState(nodes, active, error, wins, edges, ages, signals)
  insert = (signals % params.insert_every == 0) & ~jnp.all(active)
  inserted = _insert_node(state, params)
  state = jax.tree_util.tree_map(lambda a, b: jnp.where(insert, a, b), inserted, state)
  decay = params.error_decay
  return state._replace(error=state.error * decay, wins=state.wins * decay)


def gng_update(state: GNGState, signals: jax.Array, params: GNGParams = DEFAULT_GNG_PARAMS) -> GNGState:
  """Feeds the rows of ``signals [N, D]`` to the graph in order (a ``lax.scan``)."""
  _check_params(params)
  _checks.check_ndim("signals", signals, 2)
  if signals.shape[-1] != state.nodes.shape[-1]:
    raise ValueError(f"signals have dimension {signals.shape[-1]}, the GNG nodes {state.nodes.shape[-1]}")
  return jax.lax.scan(lambda s, x: (gng_step(s, x, params), None), state, signals)[0]


def gng_quantization_error(state: GNGState, x: jax.Array) -> jax.Array:
  """Mean over ``x [N, D]`` of the squared distance to the nearest active node."""
  dist2 = jnp.sum(jnp.square(x[:, None, :] - state.nodes), axis=-1)
  return jnp.mean(jnp.min(jnp.where(state.active, dist2, jnp.inf), axis=-1))


def gng_mixture(state: GNGState, variance) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The GNG as an isotropic mixture ``(logits [C], means [C, D], var [C])``.

  Inactive nodes get a logit of -1e30 (weight exactly 0); active nodes weigh
  by their decayed win counts (uniformly before any win). ``variance`` is a
  scalar or per-node ``[C]`` isotropic variance (for example the quantisation
  error per dimension, :func:`gng_quantization_error` / D).
  """
  wins = jnp.where(state.active, state.wins, 0.0)
  weights = jnp.where(jnp.sum(wins) > 0, wins, state.active.astype(wins.dtype))
  logits = jnp.where(weights > 0, jnp.log(jnp.maximum(weights, jnp.finfo(wins.dtype).tiny)), _ABSENT)
  var = jnp.broadcast_to(jnp.asarray(variance, state.nodes.dtype), state.active.shape)
  return logits, state.nodes, var
