"""The ``posterior`` evaluator: collapse and posterior statistics of the test
split's features. For every method: the effective rank of ``z``. For a head
with a diagonal Gaussian posterior (outputs ``mu``, ``var``): VJE Table 7's
variance mean and coefficient of variation and :func:`gjax.math.posterior_diagnostics`
(active units, the spread of ``mu`` against the posterior std, pairwise
cosines, dead ``z`` channels), each as ``test_<name>``."""

from __future__ import annotations

import jax.numpy as jnp

from gjax.eval.registry import Evaluator, register_evaluator
from gjax.math import effective_rank, posterior_diagnostics, posterior_statistics


def run_posterior(context, settings) -> dict[str, float]:
  del settings
  test = context.features("test")
  results = {"test_z_effective_rank": float(effective_rank(jnp.asarray(test["z"])))}
  if "var" in test and "mu" in test:
    stats = posterior_statistics(jnp.asarray(test["var"]))
    stats.update(posterior_diagnostics(*(jnp.asarray(test[k]) for k in ("mu", "var", "z"))))
    results.update({f"test_{k}": float(v) for k, v in stats.items()})
  return results


POSTERIOR = register_evaluator(
  Evaluator("posterior", run_posterior, description="effective rank of z; a diagonal posterior's statistics")
)
