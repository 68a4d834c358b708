"""Files replaced whole: written to a temporary file beside the target, then
renamed over it (``os.replace``), so a reader sees the old file or the new
one, never half of one.

The temporary file gets a unique name (``tempfile.mkstemp``: ``O_CREAT |
O_EXCL``, mode 0600, which never follows a symbolic link) in the target's
directory. A predictable name (``<path>.tmp``) was followed through a link
planted in a shared directory (the link's target overwritten), and two
writers at once (two ``eval.py``) shared it. If the write fails (a full
disk, a read-only file system) the temporary file is removed and
:class:`WriteError` names the path; the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import TextIO


def _read_umask() -> int:
  """The process's umask, read without changing it (``os.umask`` sets it, and
  another thread creating a file meanwhile would get the wrong one)."""
  try:
    with open("/proc/self/status") as f:
      return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)
  except (OSError, StopIteration, ValueError):
    mask = os.umask(0o022)  # at import, before gjax starts threads
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class WriteError(OSError):
  """A file gjax writes could not be written (a full disk, a read-only file
  system, no permission); the message names the path and the cause."""


def _write_error(label: str, error: OSError) -> WriteError:
  out = WriteError(f"cannot write {label} ({type(error).__name__}: {error.strerror or error})")
  out.errno = error.errno
  return out


@contextlib.contextmanager
def replaced_atomically(path: str, what: str = "") -> Iterator[TextIO]:
  """``with replaced_atomically(path) as f: f.write(...)``: the text written to
  ``f`` replaces ``path`` when the block ends without an exception (flushed
  and synced first). ``what`` (e.g. ``"the evaluation results"``) and the
  path name the file in a :class:`WriteError`."""
  directory = os.path.dirname(os.path.abspath(path))
  name = os.path.basename(path)
  label = f"{what} to {path}" if what else path
  try:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
  except OSError as error:
    raise _write_error(label, error) from error
  try:
    with os.fdopen(fd, "w") as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_UMASK)  # what open(path, "w") would have given it, not mkstemp's 0600
    os.replace(tmp, path)
  except BaseException as error:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    if isinstance(error, OSError) and not isinstance(error, WriteError):
      raise _write_error(label, error) from error
    raise


def write_text_atomically(path: str, text: str, what: str = "") -> None:
  """Replaces ``path`` with ``text`` (see :func:`replaced_atomically`)."""
  with replaced_atomically(path, what) as f:
    f.write(text)
