"""Lifting 2D keypoints to 3D: the pose prior vs decoupled network 2.

Measures MPJPE (root-aligned) and PA-MPJPE (mm) of the two zoo.lift_lib
lifters, the bundled lifting_deep checkpoint's pose prior and the bundled
mocap-trained decoupled network 2 (zoo/checkpoints/lift/...), on held-out
poses of the embedded motion stream's test subjects (S9, S11:
zoo.data.motion.poses(N, 'test', seed)) seen by the synthetic dataset's
random cameras (zoo.data.mocap2d), from
- the true 2D projections (all joints detected),
- the true 2D plus isotropic Gaussian pixel noise (--pixel_noise, px std;
  the people are about 250-650 px tall in the 1000 px frame),
- the detector-like noise the network was trained with (mocap2d
  DetectorNoise(): jitter proportional to the person, outliers, swaps,
  missing joints).
Both lifters see identical views (same seed).

Usage:
  python -m benchmarks.bench_lift [--num_poses=1000] [--seed=0]
      [--pixel_noise=2,4,8] [--checkpoint=DIR (decoupled network 2)]
"""
from __future__ import annotations

import shlex
import sys
import time

from absl import app
from absl import flags


from zoo import lift_lib  # noqa: E402
from zoo.data import mocap2d  # noqa: E402
from zoo.data import motion  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_integer('num_poses', 1000, 'held-out test poses')
  flags.DEFINE_integer('seed', 0, 'poses, cameras and noise')
  flags.DEFINE_string('pixel_noise', '2,4,8', 'pixel noise levels (px std)')
  flags.DEFINE_string('checkpoint', None, 'decoupled network 2 (default: the '
                      'bundled lifting checkpoint)')


def run(num_poses: int, seed: int, pixel_noise: list[float],
        checkpoint: str | None = None) -> list[tuple[str, str, dict]]:
  poses = motion.poses(num_poses, 'test', seed)
  lifters = {'lifting_deep (prior)': lift_lib.Lifter('lifting_deep'),
             'decoupled_volumetric (network 2)': lift_lib.Lifter(
                 'decoupled_volumetric', checkpoint)}
  conditions = [('true 2D', None, 0.)]
  conditions += [(f'true 2D + {n:g} px noise', None, n) for n in pixel_noise]
  conditions += [('detector-like noise, missing joints',
                  mocap2d.DetectorNoise(), 0.)]
  rows = []
  for name, lifter in lifters.items():
    for cond, noise, px in conditions:
      started = time.time()
      result = lift_lib.evaluate_on_mocap(lifter, poses, seed, noise, px)
      result['seconds'] = time.time() - started
      rows.append((name, cond, result))
      print(f'{name:34s} {cond:38s} MPJPE {result["mpjpe_mm"]:6.1f}  '
            f'PA-MPJPE {result["pa_mpjpe_mm"]:6.1f}  '
            f'({result["seconds"]:.1f} s)', flush=True)
  return rows


def main(argv):
  del argv
  print('command:', shlex.join(['python', *sys.argv]))
  rows = run(FLAGS.num_poses, FLAGS.seed,
             [float(v) for v in FLAGS.pixel_noise.split(',') if v],
             FLAGS.checkpoint)
  print('\n| lifter | 2D input | MPJPE (mm) | PA-MPJPE (mm) |')
  print('|---|---|---:|---:|')
  for name, cond, r in rows:
    print(f'| {name} | {cond} | {r["mpjpe_mm"]:.1f} | '
          f'{r["pa_mpjpe_mm"]:.1f} |')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
