"""The machine the code runs on, without importing TensorFlow.

Kept free of TensorFlow so that code which must run before TensorFlow
starts (the test session's thread settings in conftest.py) can use it too.
"""
from __future__ import annotations

import os


def available_cores() -> int:
  """CPU cores this process may run on (its affinity mask where the OS has
  one, as in a container limited to some cores; else every core), at least 1.
  """
  try:
    return max(1, len(os.sched_getaffinity(0)))
  except AttributeError:  # no affinity masks (macOS, Windows)
    return os.cpu_count() or 1
