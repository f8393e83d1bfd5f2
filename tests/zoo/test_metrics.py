"""Tests for zoo/metrics.py against brute-force computations written differently."""
import json

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
from scipy.spatial.transform import Rotation

from zoo import metrics
from zoo import skeleton as skel

J = skel.NUM_JOINTS


def _poses(n, seed=0, noise=40.):
  rng = np.random.default_rng(seed)
  gt = rng.normal(scale=300., size=(n, J, 3))
  pred = gt + rng.normal(scale=noise, size=gt.shape)
  return pred, gt


def _horn_rotation(p, g):
  """Horn (1987) quaternion absolute orientation: R maximising sum g . R p."""
  s = p.T @ g  # s[a, b] = sum p_a g_b
  sxx, sxy, sxz = s[0]
  syx, syy, syz = s[1]
  szx, szy, szz = s[2]
  n = np.array([
      [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
      [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
      [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
      [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz]])
  w, v = np.linalg.eigh(n)
  q = v[:, np.argmax(w)]  # (w, x, y, z)
  return Rotation.from_quat([q[1], q[2], q[3], q[0]]).as_matrix()


def _pa_brute(pred, gt):
  """Per-pose PA-MPJPE: Horn rotation, explicit scale and translation, loops."""
  out = []
  for p, g in zip(pred, gt):
    pc, gc = p - p.mean(0), g - g.mean(0)
    r = _horn_rotation(pc, gc)
    rp = pc @ r.T
    scale = np.sum(gc * rp) / np.sum(pc * pc)
    aligned = scale * rp + g.mean(0)
    out.append(np.mean([np.linalg.norm(a - b) for a, b in zip(aligned, g)]))
  return np.array(out)


def test_mpjpe_and_abs_mpjpe_loops():
  pred, gt = _poses(5, seed=1)
  pred += 250.  # a global offset: removed by root alignment only
  want_rel, want_abs = [], []
  for p, g in zip(pred, gt):
    want_rel.append(np.mean([np.sqrt(np.sum(((p[j] - p[0]) - (g[j] - g[0]))
                                            ** 2)) for j in range(J)]))
    want_abs.append(np.mean([np.sqrt(np.sum((p[j] - g[j]) ** 2))
                             for j in range(J)]))
  np.testing.assert_allclose(metrics.mpjpe(pred, gt), want_rel)
  np.testing.assert_allclose(metrics.abs_mpjpe(pred, gt), want_abs)
  assert metrics.abs_mpjpe(pred, gt).min() > 200.


def test_pa_mpjpe_matches_horn_quaternion_method():
  pred, gt = _poses(8, seed=2, noise=80.)
  # Random rotations/scales of the prediction: PA must undo them.
  rots = Rotation.random(8, random_state=3).as_matrix()
  pred = 0.7 * np.einsum('nij,nkj->nki', rots, pred) + 100.
  got = metrics.pa_mpjpe(pred, gt)
  np.testing.assert_allclose(got, _pa_brute(pred, gt), rtol=1e-6)


def test_pa_mpjpe_matches_scipy_orthogonal_procrustes_without_reflection():
  pred, gt = _poses(4, seed=4, noise=20.)
  want = []
  for p, g in zip(pred, gt):
    pc, gc = p - p.mean(0), g - g.mean(0)
    r, _ = scipy.linalg.orthogonal_procrustes(pc, gc)  # pc @ r ~ gc
    assert np.linalg.det(r) > 0  # small noise: no reflection involved
    scale = np.trace(gc.T @ pc @ r) / np.sum(pc ** 2)
    want.append(np.linalg.norm(scale * pc @ r + g.mean(0) - g, axis=1).mean())
  np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), want, rtol=1e-6)


def test_pa_mpjpe_zero_for_similarity_transform():
  _, gt = _poses(3, seed=5)
  rots = Rotation.random(3, random_state=6).as_matrix()
  pred = np.einsum('nij,nkj->nki', rots, gt) * np.array([0.5, 1., 2.])[:, None,
                                                                       None]
  pred += np.array([10., -2000., 5000.])
  np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), 0., atol=1e-8)


def test_pa_mpjpe_never_reflects():
  _, gt = _poses(2, seed=7)
  mirrored = gt * np.array([-1., 1., 1.])  # a reflection, not a rotation
  got = metrics.pa_mpjpe(mirrored, gt)
  # A reflection-allowing Procrustes would give 0.
  assert got.min() > 50.
  np.testing.assert_allclose(got, _pa_brute(mirrored, gt), rtol=1e-6)
  # Random proper rotations with scale >= 0 cannot beat it (sanity).
  rots = Rotation.random(2000, random_state=8).as_matrix()
  p = mirrored[0] - mirrored[0].mean(0)
  g = gt[0] - gt[0].mean(0)
  best = np.inf
  for r in rots:
    rp = p @ r.T
    s = max(np.sum(g * rp) / np.sum(p * p), 0.)  # s < 0 would be a reflection
    best = min(best, np.sum((s * rp - g) ** 2))
  pr = p @ _horn_rotation(p, g).T
  s = np.sum(g * pr) / np.sum(p * p)
  assert np.sum((s * pr - g) ** 2) <= best + 1e-6


def test_n_mpjpe_matches_scalar_search():
  pred, gt = _poses(4, seed=9)
  pred = pred * np.array([0.8, 1.0, 1.3, 2.0])[:, None, None]
  want = []
  for p, g in zip(pred, gt):
    p, g = p - p[0], g - g[0]
    res = scipy.optimize.minimize_scalar(lambda s: np.sum((s * p - g) ** 2),
                                         bounds=(0.01, 10.), method='bounded',
                                         options={'xatol': 1e-10})
    want.append(np.linalg.norm(res.x * p - g, axis=1).mean())
  np.testing.assert_allclose(metrics.n_mpjpe(pred, gt), want, rtol=1e-5)
  # Scale-only errors vanish; MPJPE does not.
  _, gt = _poses(2, seed=10)
  np.testing.assert_allclose(metrics.n_mpjpe(1.7 * gt + 3., gt), 0., atol=1e-9)
  assert metrics.mpjpe(1.7 * gt, gt).min() > 10.


def test_pck_and_auc_loops():
  pred, gt = _poses(6, seed=11, noise=70.)
  thresholds = list(range(0, 151, 5))
  want_pck, want_auc = [], []
  for p, g in zip(pred, gt):
    errs = [np.linalg.norm((p[j] - p[0]) - (g[j] - g[0])) for j in range(J)]
    want_pck.append(sum(e < 150 for e in errs) / J)
    want_auc.append(np.mean([sum(e < t for e in errs) / J
                             for t in thresholds]))
  np.testing.assert_allclose(metrics.pck3d(pred, gt), want_pck)
  np.testing.assert_allclose(metrics.auc(pred, gt), want_auc)
  np.testing.assert_allclose(metrics.pck3d(pred, gt, threshold_mm=50.), [
      sum(np.linalg.norm((p[j] - p[0]) - (g[j] - g[0])) < 50 for j in range(J))
      / J for p, g in zip(pred, gt)])
  assert len(metrics.AUC_THRESHOLDS_MM) == 31
  # Perfect prediction: PCK 1; AUC 30/31 (error < 0 mm never holds, as in the
  # MPI-INF-3DHP evaluation code).
  np.testing.assert_allclose(metrics.pck3d(gt, gt), 1.)
  np.testing.assert_allclose(metrics.auc(gt, gt), 30 / 31)


def test_pcp3d_loops():
  pred, gt = _poses(6, seed=12, noise=60.)
  want = []
  for p, g in zip(pred, gt):
    p, g = p - p[0], g - g[0]
    good = 0
    for child, parent in enumerate(skel.H36M17.parents):
      if parent < 0:
        continue
      mean_err = 0.5 * (np.linalg.norm(p[parent] - g[parent])
                        + np.linalg.norm(p[child] - g[child]))
      good += mean_err < 0.5 * np.linalg.norm(g[child] - g[parent])
    want.append(good / (J - 1))
  np.testing.assert_allclose(metrics.pcp3d(pred, gt), want)
  np.testing.assert_allclose(metrics.pcp3d(gt, gt), 1.)


def test_valid_mask_equals_subset():
  pred, gt = _poses(5, seed=13, noise=90.)
  valid = np.ones((5, J))
  valid[1, [3, 5, 16]] = 0
  valid[4, 10] = 0
  for fn in (metrics.mpjpe, metrics.abs_mpjpe, metrics.pa_mpjpe,
             metrics.pck3d, metrics.auc):
    got = fn(pred, gt, valid=valid)
    for i in range(5):
      keep = valid[i] > 0
      if fn is metrics.pa_mpjpe or fn is metrics.abs_mpjpe:
        want = fn(pred[i:i + 1, keep], gt[i:i + 1, keep])[0]
      else:  # root (joint 0) stays valid and first in the subset
        want = fn(pred[i:i + 1, keep], gt[i:i + 1, keep], root=0)[0]
      np.testing.assert_allclose(got[i], want, rtol=1e-9, err_msg=fn.__name__)
  # A pose with no valid joint is NaN and skipped by aggregation.
  valid[2] = 0
  assert np.isnan(metrics.mpjpe(pred, gt, valid)[2])
  summary = metrics.summarize(pred, gt, valid=valid)
  assert np.isfinite(summary['mpjpe_mm'])


def test_n_mpjpe_with_mask_ignores_invalid_joints():
  _, gt = _poses(2, seed=14)
  pred = 2. * gt
  pred[:, 5] += 1e4  # garbage on an invalid joint must not affect the scale
  valid = np.ones((2, J))
  valid[:, 5] = 0
  np.testing.assert_allclose(metrics.n_mpjpe(pred, gt, valid), 0., atol=1e-8)


def test_per_action():
  values = np.array([1., 2., 3., 4., np.nan, 10.])
  actions = np.array([b'walk', b'walk', 'sit', 'sit', 'sit', 'jog'], object)
  got = metrics.per_action(values, actions)
  assert got == {'jog': 10., 'sit': 3.5, 'walk': 1.5}
  with pytest.raises(ValueError, match='actions'):
    metrics.per_action(values, actions[:3])


def test_2d_error_and_pckh_loops():
  rng = np.random.default_rng(15)
  gt2d = rng.uniform(0, 256, (4, J, 2))
  pred2d = gt2d + rng.normal(scale=8., size=gt2d.shape)
  valid = np.ones((4, J))
  valid[0, 2] = 0
  head = [np.hypot(*(g[10] - g[9])) for g in gt2d]
  np.testing.assert_allclose(metrics.head_size_h36m(gt2d), head)
  want_err, want_pckh = [], []
  for i in range(4):
    errs = [np.hypot(*(pred2d[i, j] - gt2d[i, j])) for j in range(J)
            if valid[i, j]]
    want_err.append(np.mean(errs))
    want_pckh.append(np.mean([e <= 0.5 * head[i] for e in errs]))
  np.testing.assert_allclose(metrics.mean_error_2d_px(pred2d, gt2d, valid),
                             want_err)
  np.testing.assert_allclose(metrics.pckh(pred2d, gt2d, valid=valid),
                             want_pckh)
  sizes = np.full(4, 20.)
  np.testing.assert_allclose(
      metrics.pckh(pred2d, gt2d, sizes, threshold=1.0),
      [np.mean([np.hypot(*(pred2d[i, j] - gt2d[i, j])) <= 20 for j in
                range(J)]) for i in range(4)])


def test_summarize_keys_and_json():
  pred, gt = _poses(6, seed=16)
  actions = ['a', 'b', 'a', 'b', 'c', 'a']
  out = metrics.summarize(pred, gt, actions=actions, pred_abs_mm=pred + 5.,
                          gt_abs_mm=gt)
  for key in ('mpjpe_mm', 'pa_mpjpe_mm', 'n_mpjpe_mm', 'pck3d_150', 'auc',
              'pcp3d', 'per_action', 'abs_mpjpe_mm', 'num_poses'):
    assert key in out, key
  assert out['num_poses'] == 6
  np.testing.assert_allclose(out['mpjpe_mm'], metrics.mpjpe(pred, gt).mean())
  np.testing.assert_allclose(out['per_action']['a'],
                             metrics.mpjpe(pred, gt)[[0, 2, 5]].mean())
  assert out['pa_mpjpe_mm'] <= out['n_mpjpe_mm'] + 1e-9
  json.dumps(out)  # JSON-ready
  table = metrics.format_table(out)
  assert 'mpjpe_mm' in table and 'num_poses' in table
  assert all(f'  {a} ' in table for a in ('a', 'b', 'c'))
  assert 'abs_mpjpe_mm' not in metrics.summarize(pred, gt)
  assert metrics.summarize(pred, gt)['per_action'] == {}


def test_bad_shapes_raise_clear_errors():
  pred, gt = _poses(2)
  with pytest.raises(ValueError, match=r'pred must have shape \[N, J, 3\]'):
    metrics.mpjpe(pred[0], gt[0])
  with pytest.raises(ValueError, match='shapes differ'):
    metrics.mpjpe(pred[:, :5], gt)
  with pytest.raises(ValueError, match='valid must have shape'):
    metrics.mpjpe(pred, gt, valid=np.ones(J))
  with pytest.raises(ValueError, match='both'):
    metrics.summarize(pred, gt, pred_abs_mm=pred)
