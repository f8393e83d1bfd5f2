"""zoo.host: the cores a process may use, and no TensorFlow on import."""
from __future__ import annotations

import subprocess
import sys

from zoo import host


def test_affinity_mask_counts(monkeypatch):
  monkeypatch.setattr(host.os, 'sched_getaffinity', lambda pid: {0, 3, 5},
                      raising=False)
  monkeypatch.setattr(host.os, 'cpu_count', lambda: 64)
  assert host.available_cores() == 3


def test_without_affinity_masks_every_core(monkeypatch):
  monkeypatch.delattr(host.os, 'sched_getaffinity', raising=False)
  monkeypatch.setattr(host.os, 'cpu_count', lambda: 4)
  assert host.available_cores() == 4
  # os.cpu_count() may return None when the count is unknown.
  monkeypatch.setattr(host.os, 'cpu_count', lambda: None)
  assert host.available_cores() == 1


def test_import_stays_free_of_tensorflow():
  # conftest.py sets TensorFlow's thread variables from this module's count,
  # so importing it must not start TensorFlow.
  code = 'import sys; from zoo import host; print("tensorflow" in sys.modules)'
  out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                       text=True, check=True).stdout.split()
  assert out[-1] == 'False'
