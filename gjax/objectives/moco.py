"""InfoNCE against a MoCo-style queue (He et al., 2020).

The queue is the SMC memory bank of GMJE in its degenerate configuration
(equal weights, FIFO insertion, no resampling or move;
:data:`gjax.math.MOCO_QUEUE`), and the loss is the same
:func:`gjax.objectives.gmje.memory_bank_loss`, which is exactly InfoNCE with
the queue as negatives there. Keys come from the same encoder under
stop-gradient; MoCo's momentum key encoder is not used, so the comparison
with the other methods keeps one network and one optimiser.
"""

from gjax.objectives.gmje import memory_bank_loss
from gjax.objectives.registry import Objective, register

MOCO = register(Objective("moco", memory_bank_loss, head="memory_bank",
                          description="InfoNCE with a MoCo queue (the SMC bank's degenerate limit)."))
