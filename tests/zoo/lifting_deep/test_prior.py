"""Tests for the pose prior (zoo/lifting_deep/prior.py and its normalise,
fitting, lifting, layer modules): fit, import, distribution, lifting."""
import os

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from zoo import geometry
from zoo import skeleton as skel
from zoo.data import synthetic
from zoo.lifting_deep import fitting as fitting_lib
from zoo.lifting_deep import layer as layer_lib
from zoo.lifting_deep import normalise as normalise_lib
from zoo.lifting_deep import prior as prior_lib
from zoo.lifting_deep import reference as reference_lib

J = skel.NUM_JOINTS


@pytest.fixture(scope='module')
def fitted():
  poses = synthetic.poses(3000, 'train', seed=0)
  return prior_lib.PosePrior.fit(poses, num_components=2, num_basis=8,
                                 em_iterations=15, progress=False)


def _ortho(poses_model, yaw):
  cam = np.einsum('ij,njk,nlk->nli', normalise_lib.CAMERA_FROM_MODEL,
                  normalise_lib.yaw_matrix(yaw), poses_model)
  return cam - cam[:, :1]


def _low_rank_samples(prior, n, rng):
  k = rng.choice(prior.num_components, n, p=prior.weights)
  coeff = rng.normal(size=(n, prior.num_basis)) * prior.basis_std[k]
  return prior.mean[k] + np.einsum('nb,nbjc->njc', coeff, prior.basis[k])


def _pa_mpjpe(pred, gt):
  return np.mean(np.linalg.norm(geometry.procrustes_align(pred, gt) - gt,
                                axis=-1))


# ----------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------

def _yaw_fit(moving, target):
  """Global yaw rotating `moving` [J, 3] onto `target` (2D Procrustes)."""
  a = moving[:, :2]
  b = target[:, :2]
  return np.arctan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]),
                    np.sum(a * b))


def test_fit_recovers_planted_low_rank_structure():
  rng = np.random.default_rng(3)
  base = synthetic.poses(400, 'train', seed=5).astype(np.float64)
  base = base - base[:, :1]
  # Two well separated planted means (a standing and a most different pose).
  unit, _ = normalise_lib.normalise(base)
  dist = np.linalg.norm((unit - unit[0]).reshape(len(unit), -1), axis=1)
  means = np.stack([unit[0], unit[np.argmax(dist)]])
  # Per component a random 2-dim subspace (root coordinates kept at zero).
  bases = []
  for _ in range(2):
    m = rng.normal(size=(J * 3, 2))
    m[:3] = 0.
    q, _ = np.linalg.qr(m)
    bases.append(q.T)
  bases = np.stack(bases)                          # [2, 2, 51]
  stds = np.array([0.06, 0.03])
  n = 3000
  comp = (rng.random(n) < 0.35).astype(int)        # weights 0.65 / 0.35
  coeff = rng.normal(size=(n, 2)) * stds
  flat = means.reshape(2, -1)[comp] + np.einsum('nb,nbd->nd', coeff,
                                                bases[comp])
  yaw = rng.uniform(0, 2 * np.pi, n)
  poses = normalise_lib._rotate_yaw(flat.reshape(n, J, 3), yaw) * 1700.
  fitted = prior_lib.PosePrior.fit(poses, num_components=2, num_basis=2,
                                   mirror_poses=False, em_iterations=30,
                                   progress=False)
  assert fitted.scale_mm == pytest.approx(1700., rel=0.02)
  for c in range(2):
    # The fitted model's frame has an arbitrary global yaw: align it.
    errs = []
    for k in range(2):
      theta = _yaw_fit(fitted.mean[k], means[c])
      errs.append(np.abs(normalise_lib._rotate_yaw(fitted.mean[k][None],
                                               np.array([theta]))[0]
                         - means[c]).max())
    k = int(np.argmin(errs))
    assert errs[k] < 0.01, errs
    assert fitted.weights[k] == pytest.approx(0.65 if c == 0 else 0.35,
                                              abs=0.05)
    theta = _yaw_fit(fitted.mean[k], means[c])
    fb = normalise_lib._rotate_yaw(fitted.basis[k], np.full(2, theta))
    fb = fb.reshape(2, -1)
    # Planted basis vectors lie in the fitted span (cosines of principal
    # angles near 1) and the standard deviations match.
    cos = np.linalg.svd(fb @ bases[c].T, compute_uv=False)
    assert cos.min() > 0.97, cos
    np.testing.assert_allclose(np.sort(fitted.basis_std[k])[::-1], stds,
                               rtol=0.15)


def test_fit_rejects_bad_input():
  with pytest.raises(ValueError, match=r'\[N, 17, 3\]'):
    prior_lib.PosePrior.fit(np.zeros((10, 16, 3)))
  bad = synthetic.poses(50, 'train')
  bad[3, 2, 1] = np.nan
  with pytest.raises(ValueError, match='NaN'):
    prior_lib.PosePrior.fit(bad, num_basis=2)


def test_mirror_swaps_sides_and_negates_x():
  poses = normalise_lib.normalise(synthetic.poses(5, 'train'))[0]
  m = normalise_lib.mirror(poses)
  np.testing.assert_allclose(m[:, 4, 0], -poses[:, 1, 0])  # l-hip <- r-hip
  np.testing.assert_allclose(m[:, 4, 1:], poses[:, 1, 1:])
  np.testing.assert_allclose(normalise_lib.mirror(m), poses)


def test_greedy_k_centres_picks_one_centre_per_cluster():
  rng = np.random.default_rng(0)
  blobs = np.concatenate([rng.normal(size=(200, 3)) * 0.1 + c
                          for c in ([0, 0, 0], [5, 0, 0], [0, 5, 0])])
  chosen = fitting_lib.greedy_k_centres(blobs, 3)
  assert sorted(np.round(blobs[chosen] / 5).astype(int).tolist()) == \
      [[0, 0, 0], [0, 1, 0], [1, 0, 0]]


# ----------------------------------------------------------------------------
# Import, persistence, distribution
# ----------------------------------------------------------------------------

def _random_prior(k=2, b=3, seed=0, orthonormal=True):
  rng = np.random.default_rng(seed)
  mean = rng.normal(size=(k, J, 3)) * 0.1
  basis = np.stack([np.linalg.qr(rng.normal(size=(J * 3, b)))[0].T
                    for _ in range(k)]).reshape(k, b, J, 3)
  if not orthonormal:
    basis = basis * rng.uniform(0.5, 2., size=(k, b, 1, 1))
  return mean, basis, rng.uniform(0.05, 0.3, (k, b)), rng.uniform(
      0.01, 0.02, k)


def test_from_official_mat_round_trips_fixture(tmp_path):
  mean, basis, std, noise = _random_prior()
  path = str(tmp_path / 'model.mat')
  scipy.io.savemat(path, {
      'mu': np.transpose(mean, (0, 2, 1)).reshape(2, 51),      # 3x17 rows
      'e': np.transpose(basis, (0, 1, 3, 2)).reshape(2, 3, 51),
      'sigma': np.concatenate([std, noise[:, None]], 1)})
  pr = prior_lib.PosePrior.from_official_mat(path, scale_mm=1000.)
  np.testing.assert_allclose(pr.mean, mean, atol=1e-12)
  np.testing.assert_allclose(pr.basis, basis, atol=1e-12)
  np.testing.assert_allclose(pr.basis_std, std)
  np.testing.assert_allclose(pr.noise_std, noise)
  np.testing.assert_allclose(pr.weights, [0.5, 0.5])
  assert pr.scale_mm == 1000.
  # Default scale: the H36M mean skeleton's limb norm over the file's.
  default = prior_lib.PosePrior.from_official_mat(path)
  ref = np.sqrt(np.sum(skel.mean_bone_lengths_mm().astype(np.float64) ** 2))
  assert default.scale_mm == pytest.approx(
      ref / np.mean(normalise_lib.limb_norm(mean)))


def test_from_official_mat_orthonormalises_keeping_covariance(tmp_path):
  mean, basis, std, noise = _random_prior(orthonormal=False)
  path = str(tmp_path / 'model.mat')
  scipy.io.savemat(path, {
      'mu': np.transpose(mean, (0, 2, 1)).reshape(2, 51),
      'e': np.transpose(basis, (0, 1, 3, 2)).reshape(2, 3, 51),
      'sigma': np.concatenate([std, noise[:, None]], 1)})
  pr = prior_lib.PosePrior.from_official_mat(path)
  for k in range(2):
    w = basis[k].reshape(3, -1).T * std[k]
    w2 = pr.basis[k].reshape(3, -1).T * pr.basis_std[k]
    np.testing.assert_allclose(w2 @ w2.T, w @ w.T, atol=1e-10)
    np.testing.assert_allclose(pr.basis[k].reshape(3, -1) @
                               pr.basis[k].reshape(3, -1).T, np.eye(3),
                               atol=1e-10)


def test_from_official_mat_names_bad_key_and_shape(tmp_path):
  path = str(tmp_path / 'bad.mat')
  scipy.io.savemat(path, {'mu': np.zeros((2, 51)), 'e': np.zeros((2, 3, 51))})
  with pytest.raises(ValueError, match="missing key 'sigma'"):
    prior_lib.PosePrior.from_official_mat(path)
  scipy.io.savemat(path, {'mu': np.zeros((2, 50)), 'e': np.zeros((2, 3, 51)),
                          'sigma': np.ones((2, 4))})
  with pytest.raises(ValueError, match='key mu has shape'):
    prior_lib.PosePrior.from_official_mat(path)


def test_save_load_round_trip(tmp_path, fitted):
  path = str(tmp_path / 'sub' / 'prior.npz')
  fitted.save(path)
  assert os.listdir(tmp_path / 'sub') == ['prior.npz']  # no temp files left
  loaded = prior_lib.PosePrior.load(path)
  for name in ('mean', 'basis', 'basis_std', 'noise_std', 'weights'):
    np.testing.assert_array_equal(getattr(loaded, name), getattr(fitted, name))
  assert (loaded.scale_mm, loaded.num_angles, loaded.lift_noise) == (
      fitted.scale_mm, fitted.num_angles, fitted.lift_noise)
  y = np.random.default_rng(0).normal(size=(4, J, 2)) * 100
  np.testing.assert_array_equal(loaded.lift(y), fitted.lift(y))
  with pytest.raises(FileNotFoundError):
    prior_lib.PosePrior.load(str(tmp_path / 'missing.npz'))


def test_distribution_log_prob_matches_numpy_mixture(fitted):
  rng = np.random.default_rng(1)
  x = _low_rank_samples(fitted, 6, rng) + rng.normal(size=(6, J, 3)) * 0.01
  got = fitted.log_prob(x)
  flat = x.reshape(6, -1)
  logs = []
  for k in range(fitted.num_components):
    e = fitted.basis[k].reshape(fitted.num_basis, -1)
    cov = (e.T * fitted.basis_std[k] ** 2) @ e + \
        fitted.noise_std[k] ** 2 * np.eye(J * 3)
    d = flat - fitted.mean[k].reshape(-1)
    _, logdet = np.linalg.slogdet(cov)
    maha = np.einsum('ni,ij,nj->n', d, np.linalg.inv(cov), d)
    logs.append(np.log(fitted.weights[k]) - 0.5 * (
        maha + logdet + J * 3 * np.log(2 * np.pi)))
  want = np.logaddexp.reduce(np.stack(logs), axis=0)
  np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-2)
  samples = fitted.sample(5, seed=2)
  assert samples.shape == (5, J, 3) and np.all(np.isfinite(samples))


# ----------------------------------------------------------------------------
# Lifting
# ----------------------------------------------------------------------------

def test_lift_recovers_orthographic_projections_of_samples(fitted):
  rng = np.random.default_rng(2)
  gt = _ortho(_low_rank_samples(fitted, 200, rng) * fitted.scale_mm,
              rng.uniform(0, 2 * np.pi, 200))
  out = fitted.lift(gt[..., :2], lift_noise=1e-3)
  assert out.shape == (200, J, 3)
  assert _pa_mpjpe(out, gt) < 15.
  # Root-relative, camera frame (depth sign included: no PA needed).
  np.testing.assert_allclose(out[:, 0], 0., atol=1e-3)
  assert np.mean(np.linalg.norm(out - gt, axis=-1)) < 20.


def test_lift_matches_numpy_reference(fitted):
  rng = np.random.default_rng(4)
  gt = _ortho(_low_rank_samples(fitted, 3, rng) * fitted.scale_mm,
              rng.uniform(0, 2 * np.pi, 3))
  y = gt[..., :2] + rng.normal(size=(3, J, 2)) * 10.
  ref = reference_lib.lift_reference(fitted, y, num_angles=24)
  np.testing.assert_allclose(fitted.lift(y, refine=False, num_angles=24),
                             ref, atol=0.05)
  vis = (rng.random((3, J)) > 0.2).astype(np.float32)
  ref = reference_lib.lift_reference(fitted, y, visibility=vis, num_angles=24)
  np.testing.assert_allclose(
      fitted.lift(y, visibility=vis, refine=False, num_angles=24), ref,
      atol=0.05)


def test_lift_is_invariant_to_2d_translation_and_scale(fitted):
  rng = np.random.default_rng(5)
  gt = _ortho(_low_rank_samples(fitted, 20, rng) * fitted.scale_mm,
              rng.uniform(0, 2 * np.pi, 20))
  y = gt[..., :2] + rng.normal(size=(20, J, 2)) * 5.
  a = fitted.lift(y, return_details=True)
  moved = y * 0.37 + np.array([512., -80.])
  b = fitted.lift(moved, return_details=True)
  np.testing.assert_allclose(b['poses3d_mm'], a['poses3d_mm'], atol=0.05)
  # The fitted projection moves with the input.
  np.testing.assert_allclose(b['projection_2d'],
                             a['projection_2d'] * 0.37 + [512., -80.],
                             atol=0.05)
  # And it reproduces the input closely.
  assert np.mean(np.abs(a['projection_2d'] - y)) < 10.


def test_visibility_paths_agree(fitted):
  rng = np.random.default_rng(6)
  gt = _ortho(_low_rank_samples(fitted, 12, rng) * fitted.scale_mm,
              rng.uniform(0, 2 * np.pi, 12))
  y = gt[..., :2]
  pattern = np.ones(J, np.float32)
  pattern[[0, 7, 9]] = 0.   # the CPM pattern: no pelvis, spine, neck
  fixed = fitted.lift(y, visibility=pattern, refine=False)
  grouped = fitted.lift(y, visibility=np.tile(pattern, (12, 1)),
                        refine=False)
  per_pose = fitted.lift(y, visibility=np.tile(pattern * 0.999, (12, 1)),
                         refine=False)
  np.testing.assert_allclose(grouped, fixed, atol=0.05)
  np.testing.assert_allclose(per_pose, fixed, atol=0.5)
  # Zero-weight joints do not influence the result.
  y2 = y.copy()
  y2[:, [0, 7, 9]] += 300.
  np.testing.assert_allclose(fitted.lift(y2, visibility=pattern,
                                         refine=False), fixed, atol=0.05)


def test_lift_rejects_bad_shapes(fitted):
  with pytest.raises(ValueError, match=r'\[N, 17, 2\]'):
    fitted.lift(np.zeros((3, 14, 2)))
  with pytest.raises(ValueError, match='visibility'):
    fitted.lift(np.zeros((3, J, 2)), visibility=np.ones((2, J)))


def test_lifting_layer_matches_prior_and_round_trips_weights(tmp_path,
                                                             fitted):
  pattern = np.ones(J, np.float32)
  pattern[[0, 7, 9]] = 0.
  layer = layer_lib.LiftingLayer(2, 8, pattern=pattern, lift_noise=0.05,
                                 prior=fitted)
  assert not layer.trainable_weights
  rng = np.random.default_rng(7)
  y = _ortho(_low_rank_samples(fitted, 8, rng) * fitted.scale_mm,
             rng.uniform(0, 2 * np.pi, 8))[..., :2].astype(np.float32)
  out = layer(tf.constant(y))
  want = fitted.lift(y, visibility=pattern, lift_noise=0.05,
                     return_details=True)
  np.testing.assert_allclose(out['poses3d_mm'].numpy(), want['poses3d_mm'],
                             atol=1e-3)
  np.testing.assert_allclose(out['projection_2d'].numpy(),
                             want['projection_2d'], atol=1e-3)
  # A layer built without a prior is filled by loading weights: only the
  # prior's own parameters are stored, the fast-path tables are recomputed.
  import keras
  inp = keras.Input((J, 2))
  model = keras.Model(inp, layer(inp)['poses3d_mm'])
  path = str(tmp_path / 'lift.weights.h5')
  model.save_weights(path)
  fresh = layer_lib.LiftingLayer.from_config(layer.get_config())
  model2 = keras.Model(inp, fresh(inp)['poses3d_mm'])
  model2.load_weights(path)
  np.testing.assert_allclose(model2(y).numpy(), out['poses3d_mm'].numpy(),
                             atol=1e-4)
  assert fresh.prior.scale_mm == pytest.approx(fitted.scale_mm, rel=1e-6)
