"""One module per method; each registers its loss, head and settings (:mod:`gjax.objectives.registry`)."""

#: The method of a config built without naming one (``base_config()``): gjax's central method.
DEFAULT_METHOD = "vje"

from gjax.objectives import byol, gmje, gmje_mdn, ijepa, jepa, moco, sigreg, simclr, simsiam, vicreg, vje  # noqa: F401  (register their methods)
from gjax.objectives.registry import (
  TARGET_SCHEDULES,
  Objective,
  get_objective,
  register,
  registered_methods,
  require,
  target_momentum_at,
)
