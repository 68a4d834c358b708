"""The one argument parser of the studies: absl flags, as ``train.py`` and
``eval.py`` use.

A study's command defines its flags in a function ``define(flag_values)`` and
runs through :func:`run` (no config file: reports, tables, plots) or
:func:`run_with_config` (a config file and a workdir, as ``train.py``: the
studies that train). A mistake in the command (an unknown or missing flag, a
run that is not there) ends with one line ``<program>: error: ...`` and exit
status 2, like ``train.py``'s.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

Define = Callable[[flags.FlagValues], None]


class StudyError(ValueError):
  """A mistake in a study's command (a missing run, an inconsistent set of rows)."""


def fail(program: str, message: str) -> None:
  """Prints ``<program>: error: <message>`` to stderr and exits with status 2."""
  print(f"{program}: error: {message}", file=sys.stderr)
  raise SystemExit(2)


def parse(program: str, define: Define, argv: Sequence[str]) -> flags.FlagValues:
  """The flags that ``define`` declares, parsed from ``argv`` (without the
  program name), on a fresh :class:`absl.flags.FlagValues`: the studies'
  flags never meet train.py's or each other's. ``--help`` prints them and exits 0."""
  values = flags.FlagValues()
  define(values)
  if "--help" in argv or "-h" in argv:
    print(f"usage: python -m {program} [flags]\n\n{values.get_help()}")
    raise SystemExit(0)
  try:
    rest = values([program, *argv])
  except flags.Error as error:
    fail(program, str(error))
  if len(rest) > 1:
    fail(program, f"unexpected arguments {rest[1:]} (every argument is a --flag)")
  return values


def run(
  program: str, define: Define, action: Callable[[flags.FlagValues], Any], argv: Sequence[str] | None = None
) -> Any:
  """Parses ``argv`` (default: the command line) and returns ``action(flag_values)``;
  a :class:`StudyError` it raises is reported as a usage error (exit status 2)."""
  values = parse(program, define, sys.argv[1:] if argv is None else list(argv))
  try:
    return action(values)
  except StudyError as error:
    fail(program, str(error))


def run_with_config(define: Define, action: Callable[[flags.FlagValues, Any, str], Any], workdir_help: str) -> None:
  """The flags of ``define`` beside ``train.py``'s ``--config`` (a config file,
  overridable as ``--config.x=y``) and ``--workdir``, through
  :func:`gjax.cli.run_with_config` (its log set-up, multi-host start-up and
  one-line user errors): runs ``action(flag_values, config, workdir)``."""
  from gjax.cli import run_with_config as run_gjax

  define(flags.FLAGS)
  run_gjax(lambda config, workdir: action(flags.FLAGS, config, workdir), workdir_help)
