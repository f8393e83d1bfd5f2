"""Atomic file writes: the one place every module writes small text files.

A file is written to a temporary file in the same directory, flushed to
disk, given the permissions a plain open() would give (mkstemp makes 0600),
and renamed over the target, so a reader or a crash never sees half a file
and a failed write leaves the previous file as it was. No TensorFlow here.
"""
from __future__ import annotations

import os
import tempfile


def current_umask() -> int:
  """The process umask (reading it means setting it; it is set back)."""
  mask = os.umask(0)
  os.umask(mask)
  return mask


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` via a temporary file and a rename."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory,
                             prefix='.tmp-' + os.path.basename(path) + '-')
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
