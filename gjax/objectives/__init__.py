"""One module per method; each registers a pure ``(outputs, rng, hparams) -> (loss, metrics)``."""

from gjax.objectives import vje  # noqa: F401  (registers "vje")
from gjax.objectives.registry import Objective, get_objective, register, registered_methods
