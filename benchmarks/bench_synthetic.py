"""Throughput of the embedded synthetic dataset: rendering and motion capture.

Measures
- rendering examples/s on one core (render + JPEG + serialised record, in
  process; wall-clock and CPU-time rates, the latter being what one core
  delivers when the machine is shared),
- rendering examples/s with all workers (zoo.data.synthetic.generate into a
  temporary directory, wall-clock, TFRecord writing included),
- motion-capture poses/s of zoo.data.synthetic.poses (one process).

Usage:
  python -m benchmarks.bench_synthetic [--num_examples=600]
      [--num_poses=1000000] [--num_workers=0 (all cores)]
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time

from absl import app
from absl import flags


from zoo import host  # noqa: E402
from zoo.data import records  # noqa: E402
from zoo.data import synthetic  # noqa: E402

flags.DEFINE_integer('num_examples', 600, 'Examples rendered per measurement.')
flags.DEFINE_integer('num_poses', 1_000_000, 'Poses drawn from poses().')
flags.DEFINE_integer('num_workers', 0, 'Workers for the parallel run '
                     '(0: all cores).')
flags.DEFINE_integer('seed', 0, 'Dataset seed.')
FLAGS = flags.FLAGS


def bench_render_one_core(n: int, seed: int) -> tuple[float, float]:
  import cv2
  cv2.setNumThreads(1)
  synthetic.render_example(seed, 'train', 0)  # warm-up (texture banks)
  wall, cpu = time.perf_counter(), time.process_time()
  for i in range(n):
    records.make_example(synthetic.render_example(seed, 'train', i)[0]
                         ).SerializeToString()
  return (n / (time.perf_counter() - wall), n / (time.process_time() - cpu))


def bench_render_all(n: int, seed: int, workers: int) -> float:
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    synthetic.generate(tmp, 'train', n, seed=seed, num_workers=workers,
                       progress=False)
    return n / (time.perf_counter() - start)


def bench_poses(n: int, seed: int) -> float:
  synthetic.poses(1000, seed=seed)
  start = time.perf_counter()
  synthetic.poses(n, seed=seed)
  return n / (time.perf_counter() - start)


def main(argv):
  del argv
  workers = FLAGS.num_workers or host.available_cores()
  n = FLAGS.num_examples
  wall1, cpu1 = bench_render_one_core(n, FLAGS.seed)
  wall_all = bench_render_all(n, FLAGS.seed, workers)
  poses_s = bench_poses(FLAGS.num_poses, FLAGS.seed)
  load = os.getloadavg()[0] if hasattr(os, 'getloadavg') else float('nan')
  rows = [
      ('render, 1 core (wall)', f'{wall1:,.0f} examples/s'),
      ('render, 1 core (CPU time)', f'{cpu1:,.0f} examples/s'),
      (f'render, {workers} workers (wall)', f'{wall_all:,.0f} examples/s'),
      ('poses() motion capture', f'{poses_s:,.0f} poses/s'),
  ]
  width = max(len(r[0]) for r in rows)
  print(f'\nsynthetic dataset throughput ({host.available_cores()} cores, load '
        f'average {load:.1f} at the end; 320x320 JPEG q{synthetic.JPEG_QUALITY}'
        f', {n} examples, {FLAGS.num_poses:,} poses)')
  print(f"| {'measure':<{width}} | rate |")
  print(f"|{'-' * (width + 2)}|------|")
  for name, value in rows:
    print(f'| {name:<{width}} | {value} |')
  print('\ncommand: python ' + ' '.join(shlex.quote(a) for a in sys.argv))


if __name__ == '__main__':
  app.run(main)
