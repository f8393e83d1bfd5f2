"""Atomic file writes: the one place every module writes files atomically.

A file is written to a temporary file in the same directory, flushed to
disk, given the permissions a plain open() would give (mkstemp makes 0600),
and renamed over the target, so a reader or a crash never sees half a file
and a failed write leaves the previous file as it was. No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator


def current_umask() -> int:
  """The process umask (reading it means setting it; it is set back)."""
  mask = os.umask(0)
  os.umask(mask)
  return mask


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = '') -> Iterator[str]:
  """A temporary path next to `path` for a writer that wants a file name
  (savefig, np.savez, a TFRecord writer); renamed over `path` when the block
  ends without an exception, removed otherwise.

  `suffix` ends the temporary name (np.savez appends .npz to a name without
  it; matplotlib picks its format from it).
  """
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=suffix,
                             prefix='.tmp-' + os.path.basename(path) + '-')
  os.close(fd)
  try:
    yield tmp
    os.chmod(tmp, 0o666 & ~current_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path` via a temporary file and a rename."""
  with atomic_path(path) as tmp:
    with open(tmp, 'wb') as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` (UTF-8) to `path` via a temporary file and a rename."""
  with atomic_path(path) as tmp:
    with open(tmp, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
