"""Test-session setup shared by every test.

- Quiet TensorFlow's C++ logs.
- Point the zoo's dataset/prior cache at a per-run temporary directory so
  tests never read or pollute a user's ~/.cache/pose3d_zoo.
- Parallel runs (pytest-xdist; pytest.ini asks for `-n 2 --dist loadfile`):
  which test files run together on one worker, which start first, and how
  many threads each worker's TensorFlow and NumPy use.

Under pytest-xdist this file is loaded by the controlling process first,
then by every worker process it starts (which inherit its environment).
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from zoo import host  # no TensorFlow: its thread variables are set below

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# One cache per run, made by the first process that loads this file (the
# xdist controller, or the single pytest process) and removed when it exits.
# xdist workers inherit the variable, so they share the directory: every
# cache write is a complete file or directory renamed into place
# (zoo.fileio), and what is cached (the synthetic dataset, a fitted pose
# prior) is a deterministic function of its name, so two workers making the
# same entry at once waste time but never leave a torn or different one.
if 'POSE3D_ZOO_CACHE' not in os.environ:
  _cache = tempfile.mkdtemp(prefix='pose3d_zoo_test_cache_')
  os.environ['POSE3D_ZOO_CACHE'] = _cache
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)


# An xdist worker gets its share of the cores for TensorFlow's intra-op pool
# and NumPy's BLAS (both default to every core), so N workers do not run
# N x cores busy threads; subprocesses a test starts inherit the setting.
# Variables set by the user win.
_workers = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 0)
if _workers > 1:
  _threads = str(max(1, host.available_cores() // _workers))
  os.environ.setdefault('TF_NUM_INTRAOP_THREADS', _threads)
  os.environ.setdefault('OPENBLAS_NUM_THREADS', _threads)


# ----------------------------------------------------------------------------
# How `--dist loadfile` hands out work
# ----------------------------------------------------------------------------

# Test files that share an expensive session-scoped fixture (or a cache held
# by the worker process) form one unit of work, so it is built on one worker
# only: unit name -> node-id prefixes (paths relative to the repository).
SHARED_FIXTURE_UNITS = {
    # tests/export/conftest.py: `exported` (every zoo model exported) and
    # `server` (an export.serve process over them).
    'exported': ('tests/export/',),
    # tests/trainers/conftest.py: `trained_run`.
    'trained_run': ('tests/trainers/test_checkpoints.py',
                    'tests/trainers/test_evaluate.py',
                    'tests/trainers/test_evaluation.py',
                    'tests/trainers/test_mixture_training.py',
                    'tests/trainers/test_run.py'),
    # tests/trainers/publish_fixture.py: a checkpoint trained and published
    # once per process.
    'published': ('tests/trainers/test_publish.py', 'tests/zoo/test_load.py'),
}

# Units handed out before all others, in this order: the ones whose tests
# and fixtures took longest in single-process runs (`--durations`). With the
# long units started first, the quick files that remain fill in at the end
# and the workers finish close together. The order only balances the
# workers; it never changes what runs or where a fixture is shared.
HEAVY_UNITS = (
    'exported',
    'tests/trainers/test_faults.py',
    'trained_run',
    'tests/benchmarks/test_study.py',
    'tests/trainers/test_precision.py',
    'published',
    'tests/benchmarks/test_bench_roofline.py',
    'tests/benchmarks/test_bench_train_step.py',
    'tests/trainers/test_lift_mocap.py',
)


def schedule_unit(nodeid: str) -> str:
  """The unit of work a test belongs to: its SHARED_FIXTURE_UNITS name, else
  its file."""
  for unit, prefixes in SHARED_FIXTURE_UNITS.items():
    if nodeid.startswith(prefixes):
      return unit
  return nodeid.split('::', 1)[0]


def next_unit(units) -> str:
  """Of the units still waiting (in xdist's order), the one to hand out
  next: the first HEAVY_UNITS entry among them, else xdist's first."""
  rank = {unit: i for i, unit in enumerate(HEAVY_UNITS)}
  return min(units, key=lambda unit: rank.get(unit, len(rank)))  # first min


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
  """`--dist loadfile` with SHARED_FIXTURE_UNITS and HEAVY_UNITS (any other
  --dist given on the command line is xdist's own)."""
  if config.getvalue('dist') != 'loadfile':
    return None
  from xdist.scheduler import LoadFileScheduling

  class SharedFixtureFileScheduling(LoadFileScheduling):

    def _split_scope(self, nodeid: str) -> str:
      return schedule_unit(nodeid)

    def _assign_work_unit(self, node) -> None:
      if self.workqueue:
        self.workqueue.move_to_end(next_unit(self.workqueue), last=False)
      super()._assign_work_unit(node)

  return SharedFixtureFileScheduling(config, log)
