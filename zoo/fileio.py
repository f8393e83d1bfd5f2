"""Atomic file writes: the one place every module writes files atomically.

A file is written to a temporary file in the same directory, flushed to
disk, given the permissions a plain open() would give (mkstemp makes 0600),
and renamed over the target, so a reader or a crash never sees half a file
and a failed write leaves the previous file as it was. Temporaries carry the
writer's process id ('.tmp-PID-NAME-*'), so `remove_stale_temporaries` can
clear what a killed process left. No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterator

import numpy as np


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
                             prefix=temp_prefix(os.path.basename(path)))
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


# ----------------------------------------------------------------------------
# Temporaries of dead processes, and atomic directory swaps
# ----------------------------------------------------------------------------

TEMP_PREFIX = '.tmp-'
ASIDE_PREFIX = '.old-'
_OWNED = re.compile(r'^\.(?:tmp|old)-(\d+)-')


def temp_prefix(name: str, kind: str = TEMP_PREFIX) -> str:
  """'.tmp-PID-NAME-': a temporary named after the process writing it, so a
  later run can tell (and remove) what a killed process left behind."""
  return f'{kind}{os.getpid()}-{name}-'


def process_alive(pid: int) -> bool:
  """Whether process `pid` exists on this machine."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, another user's
    return True
  return True


def stale_temporaries(directory: str) -> list[str]:
  """Entries '.tmp-PID-*' / '.old-PID-*' of `directory` whose process is gone.

  Only names carrying a process id (`temp_prefix`) count; a process id that
  was reused by a new process keeps its entries (removed on a later run).
  Assumes one machine writes `directory` (a process id says nothing about
  another machine's processes).
  """
  if not os.path.isdir(directory):
    return []
  stale = []
  for entry in sorted(os.listdir(directory)):
    match = _OWNED.match(entry)
    if match and int(match.group(1)) != os.getpid() and \
        not process_alive(int(match.group(1))):
      stale.append(os.path.join(directory, entry))
  return stale


def remove_stale_temporaries(directory: str) -> list[str]:
  """Removes `stale_temporaries(directory)`; returns what was removed."""
  removed = []
  for path in stale_temporaries(directory):
    try:
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
      else:
        os.remove(path)
    except FileNotFoundError:  # another process cleaned it first
      continue
    removed.append(path)
  return removed


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_paths(first: str, second: str) -> bool:
  """Atomically swaps two existing paths (Linux renameat2 RENAME_EXCHANGE).

  Returns False, changing nothing, where the system or file system cannot
  (then the caller has to fall back to two renames).
  """
  try:
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = libc.renameat2
  except (OSError, AttributeError):
    return False
  renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                        ctypes.c_char_p, ctypes.c_uint]
  at_fdcwd = -100
  result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd,
                     os.fsencode(second), _RENAME_EXCHANGE)
  if result == 0:
    return True
  error = ctypes.get_errno()
  if error in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
    return False
  raise OSError(error, os.strerror(error), first, None, second)


@contextlib.contextmanager
def staging_directory(parent: str, name: str) -> Iterator[str]:
  """A new directory PARENT/.tmp-PID-NAME-* (plain permissions, not
  mkdtemp's 0700) to build a directory or files in before they are renamed
  into place; removed with whatever is left in it when the block ends."""
  os.makedirs(parent, exist_ok=True)
  path = tempfile.mkdtemp(dir=parent, prefix=temp_prefix(name))
  try:
    os.chmod(path, 0o777 & ~current_umask())
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def replace_directory(staged: str, final: str,
                      make_aside: Callable[[], str]) -> None:
  """Puts the complete directory `staged` at `final`, deleting what was there.

  A new `final` is one rename. An existing one swaps places with `staged` in
  one atomic step where the system can (`exchange_paths`: `final` is never
  missing), and the old one, now at `staged`, is deleted. Elsewhere the old
  one is first renamed to `make_aside()` (a path the caller's recovery
  finds, should the process die before the second rename), moved back if
  that rename fails, and deleted once the new one is in place.
  """
  if not os.path.exists(final):
    os.rename(staged, final)  # fails if a writer got there first
    return
  if exchange_paths(staged, final):
    shutil.rmtree(staged, ignore_errors=True)
    return
  aside = make_aside()
  os.rename(final, aside)
  try:
    os.rename(staged, final)
  except BaseException:
    os.rename(aside, final)
    raise
  shutil.rmtree(aside, ignore_errors=True)


# ----------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------

def atomic_write_json(path: str, obj: Any, sort_keys: bool = True) -> None:
  """Writes `obj` as indented JSON to `path` atomically (NumPy scalars and
  arrays and bytes are converted; keys sorted unless `sort_keys` is False)."""
  atomic_write_text(path, json.dumps(
      obj, indent=2, sort_keys=sort_keys, default=_json_default) + '\n')


def _json_default(value):
  if isinstance(value, np.integer):
    return int(value)
  if isinstance(value, np.floating):
    return float(value)
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, bytes):
    return value.decode()
  raise TypeError(f'cannot write {type(value).__name__} to JSON: {value!r}')


def read_json(path: str) -> Any:
  """The JSON value in file `path`."""
  with open(path, encoding='utf-8') as f:
    return json.load(f)
