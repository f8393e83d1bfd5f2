"""Lifting from the Deep's pose prior: fitting time, lifting speed, accuracy.

Measures
- fitting time of PosePrior.fit on the embedded motion-capture stream
  (zoo.data.synthetic.poses, train split; mirrored copies double it);
- lifting speed: the batched TF lifting (fixed visibility pattern, one matmul
  for the search) in poses/s at --batch and its batch-1 latency; the per-pose
  visibility path (normal equations) in poses/s; the plain per-pose NumPy
  reference (zoo.lifting_deep.reference.lift_reference) in poses/s;
- accuracy (MPJPE after root alignment and PA-MPJPE, mm) of lifting
  * noise-free orthographic projections of poses sampled from the fitted
    prior (its low-rank part: the isotropic noise term moves joints in depth
    invisibly), at a small 2D noise model (--noise_free_lift_noise) and at
    the prior's default,
  * the same with 2D noise (Gaussian, mm at the subject),
  * orthographic and perspective projections of held-out synthetic poses
    (test split; the synthetic camera model: focal 1000-1200 px, 3-7 m away,
    0.5-2 m high, aimed at the pelvis), perspective also with 2D pixel noise.

Usage:
  python -m benchmarks.bench_lifting [--num_fit_poses=100000]
      [--prior=PATH (load instead of fitting)] [--save_prior=PATH]
      [--batch=4096] [--num_eval=2000] [--num_reference=20] [--quick]
"""
from __future__ import annotations

import shlex
import sys
import time

from absl import app
from absl import flags
import numpy as np


from zoo import geometry  # noqa: E402
from zoo import metrics  # noqa: E402
from zoo.data import synthetic  # noqa: E402
from zoo.lifting_deep import normalise as normalise_lib  # noqa: E402
from zoo.lifting_deep import prior as prior_lib  # noqa: E402
from zoo.lifting_deep import reference as reference_lib  # noqa: E402

flags.DEFINE_integer('num_fit_poses', 100_000, 'Motion-capture poses to fit '
                     'on (train split).')
flags.DEFINE_integer('num_components', 3, 'Mixture components.')
flags.DEFINE_integer('num_basis', 25, 'PPCA basis size per component.')
flags.DEFINE_string('prior', None, 'Load this prior (.npz) instead of fitting.')
flags.DEFINE_string('save_prior', None, 'Write the fitted prior here.')
flags.DEFINE_integer('batch', 4096, 'Batch size for the throughput figure.')
flags.DEFINE_integer('num_eval', 2000, 'Poses per accuracy row.')
flags.DEFINE_integer('num_reference', 20, 'Poses lifted by the NumPy '
                     'reference.')
flags.DEFINE_float('noise_free_lift_noise', 1e-3, 'lift_noise for the '
                   'noise-free rows (2D noise std relative to the RMS radius).')
flags.DEFINE_boolean('quick', False, 'Fewer repetitions (shared machines).')
flags.DEFINE_integer('seed', 0, 'Seed.')
FLAGS = flags.FLAGS


def _rate(fn, count: int, reps: int) -> tuple[float, float, float]:
  """(items/s wall, median seconds per call, items per CPU-second).

  After one warm-up call. CPU seconds (all threads) are what the work costs
  whatever else runs on a shared machine; on N idle cores the wall rate is
  at most N times the per-CPU-second rate.
  """
  fn()
  times = []
  cpu = time.process_time()
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  cpu = (time.process_time() - cpu) / reps
  med = float(np.median(times))
  return count / med, med, count / max(cpu, 1e-9)


def _errors(pred, gt) -> tuple[float, float]:
  return float(metrics.mpjpe(pred, gt).mean()), float(
      metrics.pa_mpjpe(pred, gt).mean())


def _ortho(poses_model_mm: np.ndarray, yaw: np.ndarray) -> np.ndarray:
  """Camera-frame (root-relative) poses seen by a level camera at yaw."""
  cam = np.einsum('ij,njk,nlk->nli', normalise_lib.CAMERA_FROM_MODEL,
                  normalise_lib.yaw_matrix(yaw), poses_model_mm)
  return cam - cam[:, :1]


def _perspective_views(poses_world_mm: np.ndarray, rng):
  """Synthetic-dataset-like cameras: (cam mm [N,17,3], 2D px [N,17,2])."""
  n = len(poses_world_mm)
  cams, pts = [], []
  for i in range(n):
    pelvis = poses_world_mm[i, 0].astype(np.float64)
    azimuth = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(3000, 7000)
    eye = pelvis + np.array([dist * np.cos(azimuth), dist * np.sin(azimuth),
                             0.])
    eye[2] = rng.uniform(500, 2000)
    extr = geometry.look_at(eye, pelvis)
    focal = rng.uniform(1000, 1200)
    k = np.array([[focal, 0, 500], [0, focal, 500], [0, 0, 1]])
    cam = geometry.world_to_camera(poses_world_mm[i].astype(np.float64), extr)
    cams.append(cam)
    pts.append(geometry.project(cam, k))
  return np.stack(cams), np.stack(pts)


def main(argv):
  del argv
  reps = 3 if FLAGS.quick else 10
  print('command:', 'python ' + ' '.join(shlex.quote(a) for a in sys.argv))
  rng = np.random.default_rng(FLAGS.seed)
  rows = []
  if FLAGS.prior:
    pr = prior_lib.PosePrior.load(FLAGS.prior)
    print(f'prior: loaded {FLAGS.prior}')
  else:
    train = synthetic.poses(FLAGS.num_fit_poses, 'train', FLAGS.seed)
    t = time.perf_counter()
    pr = prior_lib.PosePrior.fit(train, FLAGS.num_components, FLAGS.num_basis,
                                 seed=FLAGS.seed)
    fit_s = time.perf_counter() - t
    print(f'fit: {FLAGS.num_fit_poses} poses (+ mirrored) -> '
          f'{FLAGS.num_components} components x {FLAGS.num_basis} bases in '
          f'{fit_s:.1f} s')
    if FLAGS.save_prior:
      pr.save(FLAGS.save_prior)
  print(f'prior: K={pr.num_components} B={pr.num_basis} angles='
        f'{pr.num_angles} lift_noise={pr.lift_noise} scale_mm='
        f'{pr.scale_mm:.1f} weights={np.round(pr.weights, 3).tolist()}')

  # --- speed ----------------------------------------------------------------
  test = synthetic.poses(max(FLAGS.num_eval, FLAGS.batch), 'test', FLAGS.seed)
  test_rel = test - test[:, :1]
  yaw = rng.uniform(0, 2 * np.pi, len(test))
  cam = _ortho(normalise_lib.to_model_frame(test_rel), yaw)
  y2d = cam[..., :2].astype(np.float32)
  batch = y2d[:FLAGS.batch]
  print('\nspeed (poses/s; latency = median of one call):')
  for refine in (True, False):
    rate, _, cpu_rate = _rate(lambda: pr.lift(batch, refine=refine),
                              len(batch), reps)
    _, lat, _ = _rate(lambda: pr.lift(batch[:1], refine=refine), 1,
                      20 * reps)
    print(f'  TF fixed pattern, refine={refine!s:5}: {rate:9.0f} poses/s at '
          f'batch {len(batch)} ({cpu_rate:.0f} per CPU-second); batch-1 '
          f'latency {lat * 1e3:.2f} ms')
  nvis = min(512, len(batch))
  patterns = np.ones((4, 17), np.float32)
  patterns[1, [13, 16]] = 0.   # wrists missing, etc.
  patterns[2, [3, 6]] = 0.
  patterns[3, [0, 7, 9]] = 0.
  vis = patterns[np.arange(nvis) % 4]
  rate, _, cpu_rate = _rate(lambda: pr.lift(batch[:nvis], visibility=vis),
                            nvis, max(1, reps // 3))
  print(f'  TF per-pose binary visibility, 4 patterns (grouped): {rate:9.0f} '
        f'poses/s at batch {nvis} ({cpu_rate:.0f} per CPU-second)')
  nfloat = 64
  conf = np.random.default_rng(0).uniform(0.5, 1., (nfloat, 17)).astype(
      np.float32)
  rate, _, _ = _rate(lambda: pr.lift(batch[:nfloat], visibility=conf),
                     nfloat, 1)
  print(f'  TF per-pose float weights (normal equations): {rate:9.0f} poses/s '
        f'at batch {nfloat}')
  nref = FLAGS.num_reference
  t = time.perf_counter()
  reference_lib.lift_reference(pr, batch[:nref])
  ref_rate = nref / (time.perf_counter() - t)
  print(f'  NumPy per-pose reference: {ref_rate:10.1f} poses/s '
        f'(latency {1e3 / ref_rate:.1f} ms per pose)')

  # --- accuracy -------------------------------------------------------------
  n = FLAGS.num_eval
  k = rng.choice(pr.num_components, n, p=pr.weights)
  coeff = rng.normal(size=(n, pr.num_basis)) * pr.basis_std[k]
  samples = pr.mean[k] + np.einsum('nb,nbjc->njc', coeff, pr.basis[k])
  iso = rng.normal(size=samples.shape) * pr.noise_std[k][:, None, None]
  yaw_s = rng.uniform(0, 2 * np.pi, n)
  gt_lr = _ortho(samples * pr.scale_mm, yaw_s)
  gt_full = _ortho((samples + iso) * pr.scale_mm, yaw_s)
  small = FLAGS.noise_free_lift_noise
  rows.append(('prior samples (low-rank), ortho, no noise', f'{small:g}',
               *_errors(pr.lift(gt_lr[..., :2], lift_noise=small), gt_lr)))
  rows.append(('prior samples (low-rank), ortho, no noise', 'default',
               *_errors(pr.lift(gt_lr[..., :2]), gt_lr)))
  rows.append(('prior samples (with noise term), ortho', 'default',
               *_errors(pr.lift(gt_full[..., :2]), gt_full)))
  for sigma in (10., 20.):
    noisy = gt_lr[..., :2] + rng.normal(size=gt_lr[..., :2].shape) * sigma
    rows.append((f'prior samples, ortho, 2D noise {sigma:g} mm', 'default',
                 *_errors(pr.lift(noisy), gt_lr)))
  cam_t = cam[:n]
  rows.append(('held-out synthetic, ortho, no noise', 'default',
               *_errors(pr.lift(cam_t[..., :2]), cam_t)))
  cam_p, px = _perspective_views(test[:n], rng)
  cam_p = cam_p - cam_p[:, :1]
  rows.append(('held-out synthetic, perspective, no noise', 'default',
               *_errors(pr.lift(px), cam_p)))
  for sigma in (2., 5.):
    noisy = px + rng.normal(size=px.shape) * sigma
    rows.append((f'held-out synthetic, perspective, 2D noise {sigma:g} px',
                 'default', *_errors(pr.lift(noisy), cam_p)))
  print(f'\naccuracy ({n} poses per row; mm):')
  print(f'  {"input":48} {"lift_noise":>10} {"MPJPE":>8} {"PA-MPJPE":>9}')
  for name, noise, err, pa in rows:
    print(f'  {name:48} {noise:>10} {err:8.1f} {pa:9.1f}')


if __name__ == '__main__':
  app.run(main)
