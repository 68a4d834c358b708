"""MoCo (He et al., 2020; Chen et al., 2020b): InfoNCE of the online queries
against the momentum encoder's keys, with a queue of past keys as negatives.

The queue is the SMC memory bank of GMJE in its degenerate configuration
(equal weights, FIFO insertion, no resampling or move;
:data:`gjax.math.FIFO_QUEUE`), and the loss is the same
:func:`gjax.objectives.shared_terms.memory_bank_loss`, which is exactly InfoNCE
with the queue as negatives there. The keys come from the momentum (EMA)
target network, ``θ_k <- τ θ_k + (1 - τ) θ_q`` after every step (``τ =
moco.target_momentum``, 0.99 by default: MoCo v2's 0.999 is for ~10^5-step
ImageNet runs; this one is sized for runs of ~10^3 steps), and fill the queue.
``target_momentum = 0`` is the earlier one-network variant: the keys are the
other view's online embeddings, with the gradient through both.
"""

from gjax.objectives.registry import Objective, register
from gjax.objectives.shared_terms import bank_head_settings, check_bank_settings, memory_bank_loss

MOCO = register(
  Objective(
    "moco",
    memory_bank_loss,
    head="memory_bank",
    description="MoCo: InfoNCE against a momentum encoder's keys and a queue of past keys.",
    defaults={
      "bank_size": 4096,
      "temperature": 0.2,
      "symmetric": True,
      "target_momentum": 0.99,
      "target_momentum_schedule": "constant",
    },
    check=check_bank_settings,
    head_settings=bank_head_settings,
    target_network=True,
  )
)
