"""The one form of a config error, shared by every package that checks its own
settings (the data sets, the models, the objectives, the evaluators, the trainer)."""

from __future__ import annotations


def require(ok: bool, field: str, value, what: str) -> None:
  """Raises ``ValueError("config.<field>=<value> is invalid: <what>")`` unless ``ok``."""
  if not ok:
    raise ValueError(f"config.{field}={value!r} is invalid: {what}")
