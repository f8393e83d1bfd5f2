"""Tests for benchmarks/bench_soak.py's helpers (the soak itself is a
benchmark; tests/export/test_serve_faults.py runs a short one)."""
import os

import numpy as np

from benchmarks import bench_soak


def test_percentile_matches_numpy():
  values = list(np.random.default_rng(0).exponential(10., 101))
  for q in (0, 50, 99, 100):
    assert abs(bench_soak.percentile(values, q) -
               np.percentile(values, q)) < 1e-9
  assert np.isnan(bench_soak.percentile([], 50))


def test_tally_summary_counts_and_versions():
  tally = bench_soak.Tally()
  for seconds, version in ((0.010, 1), (0.020, 1), (0.030, 2)):
    tally.ok(seconds, version)
  tally.error(RuntimeError('boom'))
  summary = tally.summary(seconds=2.)
  assert summary['requests'] == 3 and summary['errors'] == 1
  assert abs(summary['p50_ms'] - 20.) < 1e-9
  assert summary['requests_per_s'] == 1.5
  assert summary['versions'] == {1: 2, 2: 1}
  assert 'boom' in summary['first_errors'][0]


def test_peak_rss_of_this_process():
  rss = bench_soak.peak_rss_mb(os.getpid())
  if rss is not None:  # Linux
    assert rss > 1.
  assert bench_soak.peak_rss_mb(2 ** 22 + 12345) is None
