"""Scale checks without the hardware: gjax's steps compiled ahead of time for
TPU slices by XLA's TPU compiler on this host (:mod:`gjax.scale.compile`,
:mod:`gjax.scale.topology`) and lowered for GPUs with ``jax.export``
(:mod:`gjax.scale.export`). Figures from here are compiler estimates, not
measurements."""
