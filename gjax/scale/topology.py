"""TPU topologies as devices on this host, and the chips' published figures.

XLA's TPU compiler (``libtpu`` from PyPI) runs on a CPU machine: a topology
description gives the devices of a slice (one per chip; v4 in its megacore
mode, as v4 slices run), on which ``jax.jit(...).lower(...).compile()``
compiles for that slice without any TPU present.

Names: the topology as ``get_topology_desc`` takes it (``"v5e:16x16"``,
``"v4:2x2x4"``), or a Cloud slice name among :data:`SLICES` (``"v5e-256"``,
``"v4-32"``: v4 and v5p slices count TensorCores, two per chip; v5e and v6e
count chips).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re

#: GiB.
GIB = 1024**3


@dataclasses.dataclass(frozen=True)
class Chip:
  """One TPU chip's published figures (Cloud TPU system-architecture pages):
  HBM capacity, peak dense bf16 FLOP/s and HBM bandwidth."""

  generation: str
  hbm_bytes: int
  peak_bf16_flops: float
  hbm_bytes_per_second: float
  chip_config_name: str = "default"  # v4: "megacore" (one device per chip, as v4 slices run)


CHIPS = {
  "v4": Chip("v4", 32 * GIB, 275e12, 1228e9, "megacore"),
  "v5e": Chip("v5e", 16 * GIB, 197e12, 819e9),
  "v5p": Chip("v5p", 95 * GIB, 459e12, 2765e9),
  "v6e": Chip("v6e", 32 * GIB, 918e12, 1640e9),
}

#: Cloud slice names -> topologies.
SLICES = {
  "v4-8": "v4:2x2x1",
  "v4-16": "v4:2x2x2",
  "v4-32": "v4:2x2x4",
  "v4-64": "v4:2x4x4",
  "v4-128": "v4:4x4x4",
  "v5e-1": "v5e:1x1",
  "v5e-4": "v5e:2x2",
  "v5e-8": "v5e:2x4",
  "v5e-16": "v5e:4x4",
  "v5e-64": "v5e:8x8",
  "v5e-256": "v5e:16x16",
  "v5p-8": "v5p:2x2x1",
  "v5p-16": "v5p:2x2x2",
  "v5p-32": "v5p:2x2x4",
  "v5p-128": "v5p:4x4x4",
  "v6e-4": "v6e:2x2",
  "v6e-8": "v6e:2x4",
  "v6e-16": "v6e:4x4",
  "v6e-256": "v6e:16x16",
}

_TOPOLOGY = re.compile(r"(v4|v5e|v5p|v6e):(\d+)x(\d+)(?:x(\d+))?")


@dataclasses.dataclass(frozen=True)
class Slice:
  """A named topology: its chip, its devices (one per chip) and how many hosts they span."""

  name: str  # as asked for (slice or topology name)
  topology: str  # "v5e:16x16"
  chip: Chip
  devices: tuple

  @property
  def num_chips(self) -> int:
    return len(self.devices)

  @property
  def num_hosts(self) -> int:
    return len({d.process_index for d in self.devices})

  @property
  def label(self) -> str:
    return self.name if self.name == self.topology else f"{self.name} ({self.topology})"


def parse_topology(name: str) -> tuple[str, Chip]:
  """``(topology, chip)`` of a slice or topology name; ``ValueError`` naming the known ones otherwise."""
  topology = SLICES.get(name, name)
  match = _TOPOLOGY.fullmatch(topology)
  if not match:
    raise ValueError(
      f"unknown TPU topology {name!r}: give a topology such as 'v5e:2x2' or 'v4:2x2x4' "
      f"(generations {sorted(CHIPS)}) or one of the slice names {sorted(SLICES)}"
    )
  dims = [int(d) for d in match.groups()[1:] if d is not None]
  generation = match.group(1)
  if len(dims) != (3 if generation in ("v4", "v5p") else 2) or min(dims) < 1:
    raise ValueError(
      f"TPU topology {name!r}: {generation} topologies have "
      f"{3 if generation in ('v4', 'v5p') else 2} positive dimensions (e.g. "
      f"{'v4:2x2x1' if generation in ('v4', 'v5p') else 'v5e:2x2'})"
    )
  return topology, CHIPS[generation]


@functools.cache
def tpu_slice(name: str) -> Slice:
  """The devices of the TPU slice ``name``, from XLA's TPU compiler on this host.

  Needs ``libtpu`` (``pip install libtpu``; requirements.txt has it) and a
  jax whose platforms include the CPU. Raises ``RuntimeError`` naming the
  missing piece, ``ValueError`` for an unknown name.
  """
  topology, chip = parse_topology(name)
  try:
    import libtpu  # noqa: F401
  except ImportError:
    raise RuntimeError(
      f"compiling for the TPU topology {name!r} needs XLA's TPU compiler: pip install libtpu "
      "(requirements.txt pins the version that matches jax)"
    ) from None
  from jax.experimental import topologies

  # Compiling needs no TPU, so several processes may use the compiler at once
  # (test workers, a table beside a command); libtpu otherwise takes a lock
  # that makes the second process fail.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    description = topologies.get_topology_desc(
      topology_name=topology, platform="tpu", chip_config_name=chip.chip_config_name
    )
  except Exception as e:  # the compiler's own message, with the name asked for
    raise RuntimeError(f"XLA's TPU compiler has no topology {topology!r} ({name!r}): {e}") from None
  devices = tuple(description.devices)
  expected = math.prod(int(d) for d in topology.split(":")[1].split("x"))
  if len(devices) != expected:
    raise RuntimeError(f"TPU topology {topology!r} gave {len(devices)} devices for {expected} chips")
  return Slice(name, topology, chip, devices)
