"""One module per method; each registers a pure ``(outputs, rng, hparams) -> (loss, metrics)``."""

from gjax.objectives import gmje, gmje_mdn, jepa, moco, sigreg, simclr, simsiam, vicreg, vje  # noqa: F401  (register their methods)
from gjax.objectives.registry import Objective, get_objective, register, registered_methods
