"""gjax: probabilistic joint-embedding self-supervised learning in JAX/Flax.

Data flows one way: ``gjax.math`` (densities, divergences) -> ``gjax.objectives``
(one pure loss per method) -> ``gjax.models`` (encoders, heads) ->
``gjax.train`` / ``gjax.eval``.
"""

__version__ = "0.1.0"
