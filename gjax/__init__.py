"""gjax: probabilistic joint-embedding self-supervised learning in JAX/Flax.

Data flows one way: ``gjax.math`` (densities, divergences) -> ``gjax.objectives``
(one pure loss per method) -> ``gjax.models`` (encoders, heads) ->
``gjax.train`` / ``gjax.eval``.
"""

__version__ = "0.1.0"

# XLA reads XLA_FLAGS when jax creates its first backend: gjax's CPU options
# (gjax/xla_cpu.py; opt out with GJAX_XLA_CPU_DEFAULTS=0) go in before that.
from gjax import xla_cpu as _xla_cpu

_xla_cpu.apply_cpu_flags()
